using System.Buffers;
using System.Text.Json;

namespace Switchboard.Server.Messaging;

/// <summary>
/// What each device may see of an <c>e2ee</c> payload: of the pairwise ciphertexts (<c>to</c>, one per device) only
/// its own; every other field as it was sent. The store keeps the whole payload; sockets, sync and history hand each
/// device its view.
/// </summary>
internal static class E2eePayload
{
    private static ReadOnlySpan<byte> E2eeName => "\"e2ee\":"u8;

    private static ReadOnlySpan<byte> ToName => "\"to\":"u8;

    /// <summary>
    /// Whether a serialised <c>msg</c> frame may hold pairwise ciphertexts. Exact for "no": the frame is the server's
    /// JSON, so an unescaped <c>"e2ee":</c> is the property, never text inside a string.
    /// </summary>
    public static bool MayBePairwise(ReadOnlySpan<byte> frame) => frame.IndexOf(E2eeName) >= 0 && frame.IndexOf(ToName) >= 0;

    /// <summary>The payload as <paramref name="user"/>'s <paramref name="device"/> sees it.</summary>
    public static string ForDevice(string e2ee, string user, int device)
    {
        if (!e2ee.Contains("\"to\"", StringComparison.Ordinal))
        {
            return e2ee;
        }

        using var document = JsonDocument.Parse(e2ee);
        var buffer = new ArrayBufferWriter<byte>(e2ee.Length);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteForDevice(writer, document.RootElement, user, device);
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>A <c>msg</c> frame with its <c>e2ee</c> payload as <paramref name="user"/>'s <paramref name="device"/> sees it.</summary>
    public static byte[] FrameForDevice(byte[] frame, string user, int device)
    {
        using var document = JsonDocument.Parse(frame);
        if (!document.RootElement.TryGetProperty("e2ee", out var e2ee) || e2ee.ValueKind != JsonValueKind.Object || !e2ee.TryGetProperty("to", out _))
        {
            return frame;
        }

        var buffer = new ArrayBufferWriter<byte>(frame.Length);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var property in document.RootElement.EnumerateObject())
            {
                writer.WritePropertyName(property.Name);
                if (property.NameEquals("e2ee"u8))
                {
                    WriteForDevice(writer, property.Value, user, device);
                }
                else
                {
                    property.Value.WriteTo(writer);
                }
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteForDevice(Utf8JsonWriter writer, JsonElement e2ee, string user, int device)
    {
        if (e2ee.ValueKind != JsonValueKind.Object)
        {
            e2ee.WriteTo(writer);
            return;
        }

        writer.WriteStartObject();
        foreach (var property in e2ee.EnumerateObject())
        {
            writer.WritePropertyName(property.Name);
            if (!property.NameEquals("to"u8) || property.Value.ValueKind != JsonValueKind.Array)
            {
                property.Value.WriteTo(writer);
                continue;
            }

            writer.WriteStartArray();
            foreach (var entry in property.Value.EnumerateArray())
            {
                if (entry.ValueKind == JsonValueKind.Object
                    && entry.TryGetProperty("user", out var u) && u.ValueKind == JsonValueKind.String && u.ValueEquals(user)
                    && entry.TryGetProperty("device", out var d) && d.TryGetInt32(out var number) && number == device)
                {
                    entry.WriteTo(writer);
                }
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();
    }
}
