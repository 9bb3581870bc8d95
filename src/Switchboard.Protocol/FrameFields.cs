using System.Text.Json;

namespace Switchboard.Protocol;

/// <summary>Reads single top-level fields of a frame without building a document: cheap routing on hot paths.</summary>
internal static class FrameFields
{
    /// <summary>The frame's type (<c>t</c>), or null.</summary>
    public static string? Type(ReadOnlySpan<byte> json) => String(json, "t"u8);

    /// <summary>A top-level string field, or null when absent, not a string, or the JSON is not an object.</summary>
    public static string? String(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var match = reader.ValueTextEquals(name);
                reader.Read();
                if (match)
                {
                    return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }

                reader.Skip();
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // not JSON, or a string that is not valid UTF-16
        }

        return null;
    }
}
