using System.Buffers.Binary;

namespace Switchboard.Client.E2ee;

/// <summary>The labels that separate the construction's key derivations (docs/e2ee.md).</summary>
internal static class Labels
{
    public static ReadOnlySpan<byte> X3dh => "Switchboard X3DH v1"u8;
    public static ReadOnlySpan<byte> Ratchet => "Switchboard Ratchet v1"u8;
    public static ReadOnlySpan<byte> Message => "Switchboard Message v1"u8;
    public static ReadOnlySpan<byte> SenderKey => "Switchboard SenderKey v1"u8;
    public static ReadOnlySpan<byte> IdentityDh => "switchboard identity dh"u8;

    public static readonly byte[] ZeroSalt = new byte[32];
}

/// <summary>A skipped message key, kept for a message that has not arrived yet.</summary>
internal sealed record SkippedKey(byte[] Dh, int N, byte[] Key);

/// <summary>What an initiator puts in front of its messages until the peer answers (X3DH's initial message).</summary>
internal sealed record PendingPrekey(byte[] Ephemeral, int SignedPrekeyId, int? OneTimePrekeyId);

/// <summary>
/// One Double Ratchet session with one device (Signal's specification, with HKDF-SHA256, HMAC-SHA256 chains and
/// AES-256-GCM). Decryption works on a copy and keeps it only when the message authenticates, so a tampered,
/// replayed or foreign message leaves the session as it was.
/// </summary>
internal sealed class RatchetSession
{
    /// <summary>libsignal's bound on message keys skipped in one chain.</summary>
    public const int MaxSkip = 25_000;

    /// <summary>libsignal's bound on skipped message keys kept.</summary>
    public const int MaxStoredSkipped = 2_000;

    public const byte Version = 1;
    public const byte TypeMessage = 1;
    public const byte TypePrekey = 2;
    public const int HeaderSize = 2 + 32 + 4 + 4;

    public byte[] RootKey { get; set; } = [];
    public byte[] SendingPrivate { get; set; } = [];
    public byte[] SendingPublic { get; set; } = [];
    public byte[]? RemotePublic { get; set; }
    public byte[]? SendChain { get; set; }
    public byte[]? ReceiveChain { get; set; }
    public int Ns { get; set; }
    public int Nr { get; set; }
    public int Pn { get; set; }
    public List<SkippedKey> Skipped { get; set; } = [];

    /// <summary>X3DH's associated data: both devices' identity keys, the initiator's first.</summary>
    public byte[] AssociatedData { get; set; } = [];

    /// <summary>The peer's Ed25519 identity key.</summary>
    public byte[] RemoteIdentity { get; set; } = [];

    /// <summary>Set on the initiator until the peer's first message: outgoing messages are prekey messages.</summary>
    public PendingPrekey? Pending { get; set; }

    /// <summary>The initiator's side, from X3DH's shared secret and the peer's signed prekey.</summary>
    public static RatchetSession Initiate(byte[] sharedSecret, byte[] remoteSignedPrekey, byte[] associatedData, byte[] remoteIdentity, PendingPrekey pending)
    {
        var (priv, pub) = Primitives.NewX25519();
        var (root, chain) = KdfRoot(sharedSecret, Primitives.Dh(priv, remoteSignedPrekey));
        return new RatchetSession
        {
            RootKey = root,
            SendingPrivate = priv,
            SendingPublic = pub,
            RemotePublic = remoteSignedPrekey,
            SendChain = chain,
            AssociatedData = associatedData,
            RemoteIdentity = remoteIdentity,
            Pending = pending,
        };
    }

    /// <summary>The responder's side: its signed prekey is its first ratchet key.</summary>
    public static RatchetSession Respond(byte[] sharedSecret, byte[] signedPrekeyPrivate, byte[] signedPrekeyPublic, byte[] associatedData, byte[] remoteIdentity) => new()
    {
        RootKey = sharedSecret,
        SendingPrivate = signedPrekeyPrivate,
        SendingPublic = signedPrekeyPublic,
        AssociatedData = associatedData,
        RemoteIdentity = remoteIdentity,
    };

    /// <summary>Encrypts one message: <c>01 01 ‖ dh(32) ‖ pn(4) ‖ n(4) ‖ AES-256-GCM(ciphertext ‖ tag)</c>.</summary>
    public byte[] Encrypt(ReadOnlySpan<byte> plaintext)
    {
        if (SendChain is null)
        {
            throw new InvalidOperationException("this session cannot send before it has received");
        }

        var (next, messageKey) = KdfChain(SendChain);
        SendChain = next;
        var header = new byte[HeaderSize];
        header[0] = Version;
        header[1] = TypeMessage;
        SendingPublic.CopyTo(header, 2);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(34), (uint)Pn);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(38), (uint)Ns);
        Ns++;
        var (key, nonce) = MessageKeys(messageKey, Labels.Message);
        var sealedText = Primitives.Seal(key, nonce, [.. AssociatedData, .. header], plaintext);
        return [.. header, .. sealedText];
    }

    /// <summary>Decrypts one message (the <see cref="Encrypt"/> layout); throws <see cref="DecryptionException"/> and changes nothing when it does not authenticate.</summary>
    public byte[] Decrypt(ReadOnlySpan<byte> message)
    {
        if (message.Length < HeaderSize + Primitives.TagSize || message[0] != Version || message[1] != TypeMessage)
        {
            throw new DecryptionException("not a ratchet message");
        }

        var header = message[..HeaderSize];
        var dh = header.Slice(2, 32).ToArray();
        var pn = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(header[34..]), int.MaxValue);
        var n = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(header[38..]), int.MaxValue);
        var body = message[HeaderSize..];
        var associated = (byte[])[.. AssociatedData, .. header];

        // A key kept for a message that came late.
        var skipped = Skipped.FindIndex(s => s.N == n && s.Dh.AsSpan().SequenceEqual(dh));
        if (skipped >= 0)
        {
            var (skey, snonce) = MessageKeys(Skipped[skipped].Key, Labels.Message);
            var early = Primitives.Open(skey, snonce, associated, body) ?? throw new DecryptionException("the message does not authenticate");
            Skipped.RemoveAt(skipped);
            Pending = null;
            return early;
        }

        var next = Clone();
        if (next.RemotePublic is null || !dh.AsSpan().SequenceEqual(next.RemotePublic))
        {
            next.SkipTo(pn);
            next.Turn(dh);
        }
        else if (n < next.Nr)
        {
            throw new DecryptionException("a message already decrypted (a replay) or too old");
        }

        next.SkipTo(n);
        var (chain, messageKey) = KdfChain(next.ReceiveChain!);
        next.ReceiveChain = chain;
        next.Nr++;
        var (key, nonce) = MessageKeys(messageKey, Labels.Message);
        var plaintext = Primitives.Open(key, nonce, associated, body) ?? throw new DecryptionException("the message does not authenticate");
        next.Pending = null; // the peer answered: it has the session
        CopyFrom(next);
        return plaintext;
    }

    private void SkipTo(int until)
    {
        if (ReceiveChain is null)
        {
            return;
        }

        if (until - Nr > MaxSkip)
        {
            throw new DecryptionException($"more than {MaxSkip} messages skipped in one chain");
        }

        while (Nr < until)
        {
            var (chain, messageKey) = KdfChain(ReceiveChain);
            ReceiveChain = chain;
            Skipped.Add(new SkippedKey(RemotePublic!, Nr, messageKey));
            Nr++;
        }

        if (Skipped.Count > MaxStoredSkipped)
        {
            Skipped.RemoveRange(0, Skipped.Count - MaxStoredSkipped); // the oldest go first
        }
    }

    private void Turn(byte[] remote)
    {
        Pn = Ns;
        Ns = 0;
        Nr = 0;
        RemotePublic = remote;
        (RootKey, ReceiveChain) = KdfRoot(RootKey, Primitives.Dh(SendingPrivate, remote));
        (SendingPrivate, SendingPublic) = Primitives.NewX25519();
        (RootKey, SendChain) = KdfRoot(RootKey, Primitives.Dh(SendingPrivate, remote));
    }

    /// <summary>KDF_RK: HKDF-SHA256(ikm = DH output, salt = root key, info = "Switchboard Ratchet v1") → new root key ‖ chain key.</summary>
    internal static (byte[] Root, byte[] Chain) KdfRoot(byte[] rootKey, byte[] dhOutput)
    {
        var okm = Primitives.Hkdf(dhOutput, rootKey, Labels.Ratchet, 64);
        return (okm[..32], okm[32..]);
    }

    /// <summary>KDF_CK: message key = HMAC-SHA256(chain, 0x01), next chain = HMAC-SHA256(chain, 0x02).</summary>
    internal static (byte[] Next, byte[] MessageKey) KdfChain(byte[] chainKey) => (Primitives.Hmac(chainKey, 0x02), Primitives.Hmac(chainKey, 0x01));

    /// <summary>A message key's AES-256-GCM key and nonce: HKDF-SHA256(ikm = message key, salt = 32 zero bytes, info) → 32 ‖ 12 bytes.</summary>
    internal static (byte[] Key, byte[] Nonce) MessageKeys(byte[] messageKey, ReadOnlySpan<byte> info)
    {
        var okm = Primitives.Hkdf(messageKey, Labels.ZeroSalt, info, 44);
        return (okm[..32], okm[32..]);
    }

    private RatchetSession Clone() => new()
    {
        RootKey = RootKey,
        SendingPrivate = SendingPrivate,
        SendingPublic = SendingPublic,
        RemotePublic = RemotePublic,
        SendChain = SendChain,
        ReceiveChain = ReceiveChain,
        Ns = Ns,
        Nr = Nr,
        Pn = Pn,
        Skipped = [.. Skipped],
        AssociatedData = AssociatedData,
        RemoteIdentity = RemoteIdentity,
        Pending = Pending,
    };

    private void CopyFrom(RatchetSession other)
    {
        RootKey = other.RootKey;
        SendingPrivate = other.SendingPrivate;
        SendingPublic = other.SendingPublic;
        RemotePublic = other.RemotePublic;
        SendChain = other.SendChain;
        ReceiveChain = other.ReceiveChain;
        Ns = other.Ns;
        Nr = other.Nr;
        Pn = other.Pn;
        Skipped = other.Skipped;
        Pending = other.Pending;
    }
}
