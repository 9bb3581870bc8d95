using System.Globalization;
using System.Text.Json;

namespace Switchboard.Protocol;

/// <summary>
/// Parses a client frame and says in plain words what is wrong with one that does not parse: no .NET type names,
/// no exception text. Every way a frame can be malformed ends here, as an error message, never as an exception:
/// bad JSON, a field of the wrong type, a key given twice (refused: which of the two counts would depend on the
/// parser), a string whose escapes are not valid UTF-16.
/// </summary>
internal static class FrameReader
{
    /// <summary>The frame, or null with <paramref name="error"/> saying why.</summary>
    public static ClientFrame? TryParse(ReadOnlySpan<byte> json, out string? error) =>
        TryParse(json, SwitchboardJsonContext.Default.ClientFrame, out error);

    /// <summary>Any protocol body (frames and HTTP bodies), or null with <paramref name="error"/> saying why.</summary>
    public static T? TryParse<T>(ReadOnlySpan<byte> json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, out string? error)
        where T : class
    {
        try
        {
            var value = JsonSerializer.Deserialize(json, type);
            error = value is null ? "must be a JSON object" : null;
            return value;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or NotSupportedException or ArgumentException)
        {
            error = Describe(ex);
            return null;
        }
    }

    /// <summary>What went wrong, for the client: the field and the kind of mistake.</summary>
    public static string Describe(Exception ex)
    {
        if (ex is not JsonException json)
        {
            // System.Text.Json throws InvalidOperationException for a string escape that is not valid UTF-16.
            return ex is InvalidOperationException ? "a string holds an escape that is not valid UTF-16 (a lone surrogate)" : "not a valid frame";
        }

        var field = json.Path is { Length: > 2 } path && path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : null;
        if (json.Message.StartsWith("Duplicate", StringComparison.Ordinal))
        {
            return field is null ? "a field is given twice" : $"field '{field}' is given twice";
        }

        if (json.InnerException is InvalidOperationException)
        {
            return "a string holds an escape that is not valid UTF-16 (a lone surrogate)";
        }

        if (json.Message.Contains("could not be converted", StringComparison.Ordinal) && field is not null)
        {
            return $"field '{field}' has the wrong type or is out of range";
        }

        return json.BytePositionInLine is { } position
            ? string.Create(CultureInfo.InvariantCulture, $"not valid JSON at line {json.LineNumber + 1}, byte {position + 1}")
            : "not valid JSON for this frame";
    }
}
