using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using NSec.Cryptography;

namespace Switchboard.Server.Accounts;

/// <summary>A stored password: Argon2id output, its salt, and the parameters it was made with.</summary>
internal sealed record PasswordHash(byte[] Hash, byte[] Salt, string Parameters);

/// <summary>
/// Argon2id (libsodium through NSec) with a random 16-byte salt per account. The parameters are stored with each
/// hash, so raising the cost later leaves existing passwords working.
/// </summary>
internal sealed class PasswordHasher(IOptions<AccountsOptions> options)
{
    private const int HashBytes = 32;
    private readonly string _current = $"argon2id;m={options.Value.Argon2MemoryKiB};t={options.Value.Argon2Passes}";
    private readonly ConcurrentDictionary<string, PasswordBasedKeyDerivationAlgorithm> _algorithms = new(StringComparer.Ordinal);

    public PasswordHash Hash(string password)
    {
        var algorithm = For(_current);
        var salt = RandomNumberGenerator.GetBytes(algorithm.MaxSaltSize);
        return new PasswordHash(Derive(algorithm, password, salt), salt, _current);
    }

    public bool Verify(string password, PasswordHash stored) =>
        CryptographicOperations.FixedTimeEquals(Derive(For(stored.Parameters), password, stored.Salt), stored.Hash);

    /// <summary>Spends the same work as a real check, so an unknown user cannot be told from a wrong password.</summary>
    public bool VerifyNothing(string password)
    {
        _ = Derive(For(_current), password, new byte[16]);
        return false;
    }

    private static byte[] Derive(PasswordBasedKeyDerivationAlgorithm algorithm, string password, byte[] salt) =>
        algorithm.DeriveBytes(Encoding.UTF8.GetBytes(password), salt, HashBytes);

    private PasswordBasedKeyDerivationAlgorithm For(string parameters) => _algorithms.GetOrAdd(parameters, static p =>
    {
        // "argon2id;m=<KiB>;t=<passes>"
        var parts = p.Split(';');
        if (parts.Length != 3 || parts[0] != "argon2id")
        {
            throw new InvalidOperationException($"unknown password hash parameters '{p}'");
        }

        var argon = new Argon2Parameters
        {
            DegreeOfParallelism = 1, // libsodium supports one lane only
            MemorySize = int.Parse(parts[1].AsSpan(2), CultureInfo.InvariantCulture),
            NumberOfPasses = int.Parse(parts[2].AsSpan(2), CultureInfo.InvariantCulture),
        };
        return PasswordBasedKeyDerivationAlgorithm.Argon2id(in argon);
    });
}
