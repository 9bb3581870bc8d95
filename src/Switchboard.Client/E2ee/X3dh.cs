using System.Buffers.Binary;

namespace Switchboard.Client.E2ee;

/// <summary>A device's long-term keys: the Ed25519 identity, and the X25519 identity key it signs.</summary>
internal sealed record IdentityKeys(byte[] SigningPrivate, byte[] SigningPublic, byte[] DhPrivate, byte[] DhPublic, byte[] DhSignature)
{
    public static IdentityKeys Create()
    {
        var (signingPrivate, signingPublic) = Primitives.NewEd25519();
        var (dhPrivate, dhPublic) = Primitives.NewX25519();
        return new IdentityKeys(signingPrivate, signingPublic, dhPrivate, dhPublic, Primitives.Sign(signingPrivate, [.. Labels.IdentityDh, .. dhPublic]));
    }
}

/// <summary>A signed prekey this device made: its id, key pair and the identity's signature over the public key.</summary>
internal sealed record SignedPrekeyPair(int Id, byte[] Private, byte[] Public, byte[] Signature, long CreatedAt);

/// <summary>A peer device's public keys as the directory handed them out (checked by <see cref="X3dh.Verify"/>).</summary>
internal sealed record PeerBundle(string User, int Device, byte[] Identity, byte[] IdentityDh, byte[] IdentityDhSignature, int SignedPrekeyId, byte[] SignedPrekey, byte[] SignedPrekeySignature, int? OneTimePrekeyId, byte[]? OneTimePrekey);

/// <summary>
/// X3DH (Signal's specification) over X25519 with HKDF-SHA256, and the prekey message that carries the initiator's
/// part: <c>01 02 ‖ identity(32) ‖ identity dh(32) ‖ its signature(64) ‖ ephemeral(32) ‖ signed prekey id(4) ‖
/// one-time prekey id(4, 0xFFFFFFFF for none) ‖ the first ratchet message</c>.
/// </summary>
internal static class X3dh
{
    public const int PrekeyHeaderSize = 2 + 32 + 32 + 64 + 32 + 4 + 4;
    private const uint NoOneTimePrekey = uint.MaxValue;

    /// <summary>Both signatures of a bundle: its X25519 identity key and its signed prekey, by its Ed25519 identity.</summary>
    public static bool Verify(PeerBundle bundle) =>
        bundle.Identity.Length == 32 && bundle.IdentityDh.Length == 32 && bundle.SignedPrekey.Length == 32
        && (bundle.OneTimePrekey is null || bundle.OneTimePrekey.Length == 32)
        && Primitives.Verify(bundle.Identity, [.. Labels.IdentityDh, .. bundle.IdentityDh], bundle.IdentityDhSignature)
        && Primitives.Verify(bundle.Identity, bundle.SignedPrekey, bundle.SignedPrekeySignature);

    /// <summary>The initiator's session with a verified bundle's device.</summary>
    public static RatchetSession Initiate(IdentityKeys me, PeerBundle peer)
    {
        if (!Verify(peer))
        {
            throw new DecryptionException($"the keys of {peer.User}'s device {peer.Device} are not signed by its identity key");
        }

        var (ephemeralPrivate, ephemeralPublic) = Primitives.NewX25519();
        var dh1 = Primitives.Dh(me.DhPrivate, peer.SignedPrekey);
        var dh2 = Primitives.Dh(ephemeralPrivate, peer.IdentityDh);
        var dh3 = Primitives.Dh(ephemeralPrivate, peer.SignedPrekey);
        var dh4 = peer.OneTimePrekey is { } oneTime ? Primitives.Dh(ephemeralPrivate, oneTime) : [];
        var secret = SharedSecret(dh1, dh2, dh3, dh4);
        var associated = AssociatedData(me.SigningPublic, me.DhPublic, peer.Identity, peer.IdentityDh);
        return RatchetSession.Initiate(secret, peer.SignedPrekey, associated, peer.Identity, new PendingPrekey(ephemeralPublic, peer.SignedPrekeyId, peer.OneTimePrekeyId));
    }

    /// <summary>A ratchet message wrapped as a prekey message (while the peer has not answered yet).</summary>
    public static byte[] Wrap(IdentityKeys me, PendingPrekey pending, byte[] message)
    {
        var header = new byte[PrekeyHeaderSize];
        header[0] = RatchetSession.Version;
        header[1] = RatchetSession.TypePrekey;
        me.SigningPublic.CopyTo(header, 2);
        me.DhPublic.CopyTo(header, 34);
        me.DhSignature.CopyTo(header, 66);
        pending.Ephemeral.CopyTo(header, 130);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(162), (uint)pending.SignedPrekeyId);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(166), pending.OneTimePrekeyId is { } id ? (uint)id : NoOneTimePrekey);
        return [.. header, .. message];
    }

    /// <summary>The parts of a prekey message.</summary>
    public static (byte[] Identity, byte[] IdentityDh, byte[] Ephemeral, int SignedPrekeyId, int? OneTimePrekeyId, byte[] Message) Unwrap(ReadOnlySpan<byte> prekeyMessage)
    {
        if (prekeyMessage.Length < PrekeyHeaderSize + RatchetSession.HeaderSize || prekeyMessage[0] != RatchetSession.Version || prekeyMessage[1] != RatchetSession.TypePrekey)
        {
            throw new DecryptionException("not a prekey message");
        }

        var identity = prekeyMessage.Slice(2, 32).ToArray();
        var identityDh = prekeyMessage.Slice(34, 32).ToArray();
        if (!Primitives.Verify(identity, [.. Labels.IdentityDh, .. identityDh], prekeyMessage.Slice(66, 64)))
        {
            throw new DecryptionException("the sender's identity keys do not match");
        }

        var oneTime = BinaryPrimitives.ReadUInt32BigEndian(prekeyMessage[166..]);
        return (identity, identityDh, prekeyMessage.Slice(130, 32).ToArray(), (int)BinaryPrimitives.ReadUInt32BigEndian(prekeyMessage[162..]),
            oneTime == NoOneTimePrekey ? null : (int)oneTime, prekeyMessage[PrekeyHeaderSize..].ToArray());
    }

    /// <summary>The responder's session, from the initiator's part and this device's prekeys (the one-time one, if named, is the caller's to delete once the message authenticates).</summary>
    public static RatchetSession Respond(IdentityKeys me, SignedPrekeyPair signedPrekey, byte[]? oneTimePrivate, byte[] peerIdentity, byte[] peerIdentityDh, byte[] ephemeral)
    {
        var dh1 = Primitives.Dh(signedPrekey.Private, peerIdentityDh);
        var dh2 = Primitives.Dh(me.DhPrivate, ephemeral);
        var dh3 = Primitives.Dh(signedPrekey.Private, ephemeral);
        var dh4 = oneTimePrivate is { } oneTime ? Primitives.Dh(oneTime, ephemeral) : [];
        var secret = SharedSecret(dh1, dh2, dh3, dh4);
        var associated = AssociatedData(peerIdentity, peerIdentityDh, me.SigningPublic, me.DhPublic);
        return RatchetSession.Respond(secret, signedPrekey.Private, signedPrekey.Public, associated, peerIdentity);
    }

    /// <summary>SK = HKDF-SHA256(ikm = 32 × 0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4], salt = 32 zero bytes, info = "Switchboard X3DH v1"), 32 bytes.</summary>
    private static byte[] SharedSecret(byte[] dh1, byte[] dh2, byte[] dh3, byte[] dh4)
    {
        byte[] ikm = [.. Enumerable.Repeat((byte)0xFF, 32), .. dh1, .. dh2, .. dh3, .. dh4];
        return Primitives.Hkdf(ikm, Labels.ZeroSalt, Labels.X3dh, 32);
    }

    /// <summary>AD = initiator identity ‖ initiator identity dh ‖ responder identity ‖ responder identity dh (128 bytes).</summary>
    private static byte[] AssociatedData(byte[] initiator, byte[] initiatorDh, byte[] responder, byte[] responderDh) => [.. initiator, .. initiatorDh, .. responder, .. responderDh];
}
