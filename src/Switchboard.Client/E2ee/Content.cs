using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Switchboard.Client.E2ee;

/// <summary>A sender key handed to one device: the chain as it is at <see cref="Iteration"/> and the public signing key (base64url).</summary>
internal sealed record SenderKeyDistribution(string Conv, int Id, int Iteration, string Chain, string Sign);

/// <summary>What is encrypted: UTF-8 JSON, padded (ISO/IEC 7816-4) to a multiple of 32 bytes.</summary>
internal sealed record Content
{
    /// <summary>The text of a message or an edit.</summary>
    public string? Body { get; init; }

    /// <summary>A sender key hand-out (in a group send's pairwise part).</summary>
    public SenderKeyDistribution? Skd { get; init; }

    public const int Block = 32;

    public byte[] Pad()
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(this, E2eeJsonContext.Default.Content);
        var padded = new byte[((json.Length / Block) + 1) * Block];
        json.CopyTo(padded, 0);
        padded[json.Length] = 0x80;
        return padded;
    }

    public static Content Unpad(ReadOnlySpan<byte> padded)
    {
        var end = padded.LastIndexOfAnyExcept((byte)0);
        if (end < 0 || padded[end] != 0x80)
        {
            throw new DecryptionException("bad padding");
        }

        try
        {
            return JsonSerializer.Deserialize(padded[..end], E2eeJsonContext.Default.Content) ?? throw new DecryptionException("empty content");
        }
        catch (JsonException ex)
        {
            throw new DecryptionException("content is not JSON", ex);
        }
    }

    public override string ToString() => Body ?? "";
}

/// <summary>The SDK's stored end-to-end records, by the source generator (no reflection).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Content))]
[JsonSerializable(typeof(IdentityKeys))]
[JsonSerializable(typeof(SignedPrekeyPair))]
[JsonSerializable(typeof(RatchetSession))]
[JsonSerializable(typeof(SenderKeyState))]
[JsonSerializable(typeof(HashSet<string>))]
[JsonSerializable(typeof(List<SenderKeyState>))]
[JsonSerializable(typeof(Sealing))]
[JsonSerializable(typeof(List<Protocol.DeviceAddress>))]
internal sealed partial class E2eeJsonContext : JsonSerializerContext;

/// <summary>An encrypted send not acked yet: what to encrypt again if the server says the devices changed.</summary>
internal sealed record Sealing(string Conv, string Kind, string Text, long? Target);

internal static class Text
{
    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
