using NSec.Cryptography;

namespace Switchboard.Client.E2ee;

/// <summary>
/// The primitives of the construction (docs/e2ee.md), all from NSec (libsodium): X25519, Ed25519, HKDF-SHA256,
/// HMAC-SHA256 and AES-256-GCM (the AEAD WebCrypto also has). Keys travel as raw bytes: the state store keeps them
/// and the browser's implementation must produce the same bytes.
/// </summary>
internal static class Primitives
{
    public const int KeySize = 32;
    public const int SignatureSize = 64;
    public const int NonceSize = 12;
    public const int TagSize = 16;

    private static KeyCreationParameters Exportable => new() { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };

    private static SharedSecretCreationParameters ExportableSecret => new() { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };

    /// <summary>A new X25519 key pair: (private, public), raw.</summary>
    public static (byte[] Private, byte[] Public) NewX25519()
    {
        using var key = Key.Create(KeyAgreementAlgorithm.X25519, Exportable);
        return (key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    /// <summary>A new Ed25519 key pair: (private seed, public), raw.</summary>
    public static (byte[] Private, byte[] Public) NewEd25519()
    {
        using var key = Key.Create(SignatureAlgorithm.Ed25519, Exportable);
        return (key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    /// <summary>X25519(private, public); throws <see cref="DecryptionException"/> for a public key of low order.</summary>
    public static byte[] Dh(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> publicKey)
    {
        using var key = Key.Import(KeyAgreementAlgorithm.X25519, privateKey, KeyBlobFormat.RawPrivateKey);
        if (!PublicKey.TryImport(KeyAgreementAlgorithm.X25519, publicKey, KeyBlobFormat.RawPublicKey, out var peer) || peer is null)
        {
            throw new DecryptionException("not an X25519 public key");
        }

        using var secret = KeyAgreementAlgorithm.X25519.Agree(key, peer, ExportableSecret) ?? throw new DecryptionException("X25519 agreement failed (a low-order public key)");
        return secret.Export(SharedSecretBlobFormat.RawSharedSecret);
    }

    public static byte[] Sign(ReadOnlySpan<byte> privateKey, ReadOnlySpan<byte> data)
    {
        using var key = Key.Import(SignatureAlgorithm.Ed25519, privateKey, KeyBlobFormat.RawPrivateKey);
        return SignatureAlgorithm.Ed25519.Sign(key, data);
    }

    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        signature.Length == SignatureSize
        && PublicKey.TryImport(SignatureAlgorithm.Ed25519, publicKey, KeyBlobFormat.RawPublicKey, out var key) && key is not null
        && SignatureAlgorithm.Ed25519.Verify(key, data, signature);

    /// <summary>HKDF-SHA256 (RFC 5869).</summary>
    public static byte[] Hkdf(ReadOnlySpan<byte> inputKeyMaterial, ReadOnlySpan<byte> salt, ReadOnlySpan<byte> info, int length) =>
        KeyDerivationAlgorithm.HkdfSha256.DeriveBytes(inputKeyMaterial, salt, info, length);

    /// <summary>HMAC-SHA256 of one byte: the chain step of the ratchets.</summary>
    public static byte[] Hmac(ReadOnlySpan<byte> key, byte input)
    {
        using var mac = Key.Import(MacAlgorithm.HmacSha256, key, KeyBlobFormat.RawSymmetricKey);
        return MacAlgorithm.HmacSha256.Mac(mac, [input]);
    }

    /// <summary>AES-256-GCM: the ciphertext with its 16-byte tag appended.</summary>
    public static byte[] Seal(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> plaintext)
    {
        using var k = Key.Import(AeadAlgorithm.Aes256Gcm, key, KeyBlobFormat.RawSymmetricKey);
        return AeadAlgorithm.Aes256Gcm.Encrypt(k, nonce, associatedData, plaintext);
    }

    /// <summary>AES-256-GCM decryption; null when the tag does not verify (tampered, or another key).</summary>
    public static byte[]? Open(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> associatedData, ReadOnlySpan<byte> ciphertext)
    {
        if (ciphertext.Length < TagSize)
        {
            return null;
        }

        using var k = Key.Import(AeadAlgorithm.Aes256Gcm, key, KeyBlobFormat.RawSymmetricKey);
        return AeadAlgorithm.Aes256Gcm.Decrypt(k, nonce, associatedData, ciphertext);
    }

    public static byte[] Random(int count) => System.Security.Cryptography.RandomNumberGenerator.GetBytes(count);
}

/// <summary>A message that cannot be decrypted or verified: tampered, replayed, for another device, out of the window.</summary>
public sealed class DecryptionException : Exception
{
    /// <summary>Creates the failure.</summary>
    public DecryptionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the failure.</summary>
    public DecryptionException()
        : this("decryption failed")
    {
    }

    /// <summary>Creates the failure.</summary>
    public DecryptionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
