using System.Buffers.Binary;
using System.Text;

namespace Switchboard.Client.E2ee;

/// <summary>
/// Sender Keys for groups: each device encrypts a group message once with a chain of its own (HMAC-SHA256 steps, as
/// in the Double Ratchet's chains) and signs it with an Ed25519 key of the chain; it hands the chain and the public
/// signing key to every member device pairwise. Message: <c>01 03 ‖ key id(4) ‖ iteration(4) ‖ AES-256-GCM(…) ‖
/// Ed25519 signature(64) over everything before it</c>; the associated data is the first 10 bytes ‖ UTF-8(conv).
/// </summary>
internal sealed class SenderKeyState
{
    public const byte TypeSenderKey = 3;
    public const int HeaderSize = 10;

    public int KeyId { get; set; }
    public int Iteration { get; set; }
    public byte[] ChainKey { get; set; } = [];
    public byte[] SigningPublic { get; set; } = [];

    /// <summary>Only on the owner's side.</summary>
    public byte[]? SigningPrivate { get; set; }

    /// <summary>Message keys of iterations skipped (late messages): iteration → key.</summary>
    public Dictionary<int, byte[]> Skipped { get; set; } = [];

    public static SenderKeyState Create()
    {
        var (signingPrivate, signingPublic) = Primitives.NewEd25519();
        return new SenderKeyState
        {
            KeyId = (int)(BinaryPrimitives.ReadUInt32BigEndian(Primitives.Random(4)) & 0x7FFF_FFFF),
            ChainKey = Primitives.Random(32),
            SigningPrivate = signingPrivate,
            SigningPublic = signingPublic,
        };
    }

    public byte[] Encrypt(string conv, ReadOnlySpan<byte> plaintext)
    {
        var (next, messageKey) = RatchetSession.KdfChain(ChainKey);
        var header = Header(KeyId, Iteration);
        ChainKey = next;
        Iteration++;
        var (key, nonce) = RatchetSession.MessageKeys(messageKey, Labels.SenderKey);
        byte[] body = [.. header, .. Primitives.Seal(key, nonce, [.. header, .. Encoding.UTF8.GetBytes(conv)], plaintext)];
        return [.. body, .. Primitives.Sign(SigningPrivate!, body)];
    }

    /// <summary>The key id of a sender-key message, to find its state.</summary>
    public static int KeyIdOf(ReadOnlySpan<byte> message) =>
        message.Length >= HeaderSize + Primitives.TagSize + Primitives.SignatureSize && message[0] == RatchetSession.Version && message[1] == TypeSenderKey
            ? (int)BinaryPrimitives.ReadUInt32BigEndian(message[2..])
            : throw new DecryptionException("not a sender-key message");

    /// <summary>Decrypts on a copy; the state changes only when the signature and the tag verify.</summary>
    public byte[] Decrypt(string conv, ReadOnlySpan<byte> message)
    {
        if (KeyIdOf(message) != KeyId)
        {
            throw new DecryptionException("another sender key");
        }

        var body = message[..^Primitives.SignatureSize];
        if (!Primitives.Verify(SigningPublic, body, message[^Primitives.SignatureSize..]))
        {
            throw new DecryptionException("the sender-key signature does not verify");
        }

        var iteration = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(message[6..]), int.MaxValue);
        var associated = (byte[])[.. body[..HeaderSize], .. Encoding.UTF8.GetBytes(conv)];
        byte[] messageKey;
        var chain = ChainKey;
        var at = Iteration;
        var skipped = new Dictionary<int, byte[]>(Skipped);
        if (iteration < at)
        {
            if (!skipped.Remove(iteration, out messageKey!))
            {
                throw new DecryptionException("a message already decrypted (a replay) or too old");
            }
        }
        else
        {
            if (iteration - at > RatchetSession.MaxSkip)
            {
                throw new DecryptionException($"more than {RatchetSession.MaxSkip} messages skipped");
            }

            while (at < iteration)
            {
                var (next, key) = RatchetSession.KdfChain(chain);
                skipped[at++] = key;
                chain = next;
            }

            (chain, messageKey) = RatchetSession.KdfChain(chain);
            at++;
        }

        var (aesKey, nonce) = RatchetSession.MessageKeys(messageKey, Labels.SenderKey);
        var plaintext = Primitives.Open(aesKey, nonce, associated, body[HeaderSize..]) ?? throw new DecryptionException("the message does not authenticate");
        foreach (var old in skipped.Keys.Order().Take(Math.Max(0, skipped.Count - RatchetSession.MaxStoredSkipped)).ToList())
        {
            skipped.Remove(old);
        }

        ChainKey = chain;
        Iteration = at;
        Skipped = skipped;
        return plaintext;
    }

    private static byte[] Header(int keyId, int iteration)
    {
        var header = new byte[HeaderSize];
        header[0] = RatchetSession.Version;
        header[1] = TypeSenderKey;
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(2), (uint)keyId);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(6), (uint)iteration);
        return header;
    }
}
