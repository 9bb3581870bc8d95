using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Switchboard.Protocol;
using Switchboard.Server.Gateway;

namespace Switchboard.Tests;

/// <summary>
/// Properties of the two parsers that read what anyone on the network sends: the frame parser and the WebSocket
/// upgrade parser. Whatever the input, an answer and never an exception; errors in plain words; what is valid
/// read back exactly.
/// </summary>
public sealed class ParserPropertyTests
{
    private static readonly string[] Fields = ["t", "v", "token", "cid", "conv", "kind", "body", "reply_to", "seq", "on", "users", "target", "after"];

    private static bool IsPlain(string? error) =>
        !string.IsNullOrWhiteSpace(error) && !error.Contains("System.", StringComparison.Ordinal) && !error.Contains('`', StringComparison.Ordinal);

    private static bool ParsesOrSaysWhy(byte[] bytes)
    {
        var frame = FrameReader.TryParse(bytes, out var error);
        return frame is not null ? error is null : IsPlain(error);
    }

    /// <summary>Escapes every character as \uXXXX, lone surrogates included, as a hostile client may.</summary>
    private static string JsonString(string value)
    {
        var builder = new StringBuilder("\"");
        foreach (var c in value)
        {
            builder.Append(System.Globalization.CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
        }

        return builder.Append('"').ToString();
    }

    private static bool IsValidUtf16(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(value[i]))
            {
                return false;
            }
        }

        return true;
    }

    [Property(MaxTest = 500)]
    public bool Any_text_is_a_frame_or_a_plain_error(string? text) => ParsesOrSaysWhy(Encoding.UTF8.GetBytes(text ?? ""));

    [Property(MaxTest = 500)]
    public bool Any_bytes_are_a_frame_or_a_plain_error(byte[]? bytes) => ParsesOrSaysWhy(bytes ?? []);

    [Property(MaxTest = 500)]
    public bool A_valid_frame_with_bytes_changed_is_still_a_frame_or_a_plain_error(NonNegativeInt at, byte value, bool insert)
    {
        var frame = Encoding.UTF8.GetBytes("{\"t\":\"send\",\"cid\":\"c-1\",\"conv\":\"dm:alice:bob\",\"kind\":\"text\",\"body\":\"hi \\u00e9\",\"reply_to\":3}");
        var position = at.Get % (frame.Length + 1);
        var changed = insert || position == frame.Length
            ? [.. frame[..position], value, .. frame[position..]]
            : frame.ToArray();
        if (!insert && position < frame.Length)
        {
            changed[position] = value;
        }

        return ParsesOrSaysWhy(changed);
    }

    [Property(MaxTest = 300)]
    public bool Any_string_in_a_field_reads_back_exactly_or_is_refused_as_invalid_utf16(string? cid, string? body)
    {
        cid ??= "";
        body ??= "";
        var json = $"{{\"t\":\"send\",\"cid\":{JsonString(cid)},\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":{JsonString(body)}}}";
        var frame = FrameReader.TryParse(Encoding.UTF8.GetBytes(json), out var error);
        return IsValidUtf16(cid) && IsValidUtf16(body)
            ? frame is not null && frame.Cid == cid && frame.Body == body
            : frame is null && error!.Contains("UTF-16", StringComparison.Ordinal);
    }

    [Property(MaxTest = 200)]
    public Property A_key_given_twice_is_refused_whatever_the_values() =>
        Prop.ForAll(Gen.Elements(Fields).ToArbitrary(), Gen.Elements("1", "\"x\"", "true", "null", "[]", "{}").ToArbitrary(), Gen.Elements("2", "\"y\"", "false", "null").ToArbitrary(), (field, first, second) =>
        {
            var json = $"{{\"t\":\"recv\",\"{field}\":{first},\"conv\":\"dm:a:b\",\"{field}\":{second}}}";
            var frame = FrameReader.TryParse(Encoding.UTF8.GetBytes(json), out var error);
            return frame is null && IsPlain(error);
        });

    private static string ValidHead(string key, IEnumerable<string> extra) =>
        "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13" + string.Concat(extra.Select(h => "\r\n" + h));

    private static readonly string Key = Convert.ToBase64String(new byte[16]);

    [Property(MaxTest = 500)]
    public bool Any_head_gets_400_426_or_101_and_never_an_exception(string? head)
    {
        var (status, key) = GatewayUpgrade.Parse(head ?? "");
        return status is 400 or 426 || (status == 101 && key is not null);
    }

    [Property(MaxTest = 300)]
    public Property A_valid_upgrade_with_any_well_formed_extra_headers_is_101() =>
        Prop.ForAll(
            Gen.ListOf(Gen.Elements("X-A: 1", "Accept: */*", "User-Agent: test/1.0 (x)", "Origin: http://localhost", "Sec-WebSocket-Protocol: chat", "Cache-Control: no-cache", "X-Tab:\tvalue")).ToArbitrary(),
            extra => GatewayUpgrade.Parse(ValidHead(Key, extra)) == (101, Key));

    [Property(MaxTest = 300)]
    public Property A_control_character_or_a_byte_above_127_in_any_header_is_400() =>
        Prop.ForAll(
            Gen.Choose(1, 5).ToArbitrary(),
            Gen.Elements('\0', '\n', '\r', '\x01', '\x1f', '\x7f', '\u00e9', '\u00ff').ToArbitrary(),
            (line, bad) =>
            {
                var lines = ValidHead(Key, []).Split("\r\n");
                lines[line] = lines[line].Insert(lines[line].Length - 1, bad.ToString());
                return GatewayUpgrade.Parse(string.Join("\r\n", lines)).Status == 400;
            });

    [Property(MaxTest = 100)]
    public Property A_header_that_must_be_single_is_400_when_repeated() =>
        Prop.ForAll(
            Gen.Elements("Host: other", "Sec-WebSocket-Version: 13", $"Sec-WebSocket-Key: {Key}", "Content-Length: 0\r\nContent-Length: 0").ToArbitrary(),
            repeated => GatewayUpgrade.Parse(ValidHead(Key, [repeated])).Status == 400);

    [Property(MaxTest = 300)]
    public bool A_head_with_a_line_ended_by_lf_alone_is_refused_before_its_end(NonNegativeInt at)
    {
        var head = Encoding.ASCII.GetBytes(ValidHead(Key, []) + "\r\n\r\n");
        var crs = Enumerable.Range(0, head.Length).Where(i => head[i] == (byte)'\r').ToArray();
        var cut = crs[at.Get % crs.Length];
        var bare = head.Where((_, i) => i != cut).ToArray(); // that line now ends with LF alone
        return GatewayUpgrade.HasBareLineFeedOrNul(bare, 0) && !GatewayUpgrade.HasBareLineFeedOrNul(head, 0);
    }
}
