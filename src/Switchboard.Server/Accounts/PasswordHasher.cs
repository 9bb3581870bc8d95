using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using NSec.Cryptography;

namespace Switchboard.Server.Accounts;

/// <summary>Argon2id (libsodium through NSec) with a random 16-byte salt per account.</summary>
internal sealed class PasswordHasher
{
    private const int HashBytes = 32;
    private readonly PasswordBasedKeyDerivationAlgorithm _argon2;

    public PasswordHasher(IOptions<AccountsOptions> options)
    {
        var parameters = new Argon2Parameters
        {
            DegreeOfParallelism = 1, // libsodium supports one lane only
            MemorySize = options.Value.Argon2MemoryKiB,
            NumberOfPasses = options.Value.Argon2Passes,
        };
        _argon2 = PasswordBasedKeyDerivationAlgorithm.Argon2id(in parameters);
    }

    public (byte[] Hash, byte[] Salt) Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(_argon2.MaxSaltSize);
        return (Derive(password, salt), salt);
    }

    public bool Verify(string password, byte[] hash, byte[] salt) =>
        CryptographicOperations.FixedTimeEquals(Derive(password, salt), hash);

    private byte[] Derive(string password, byte[] salt) =>
        _argon2.DeriveBytes(Encoding.UTF8.GetBytes(password), salt, HashBytes);
}
