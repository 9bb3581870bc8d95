namespace Switchboard.Server.Accounts;

/// <summary>Settings of accounts and devices, bound from <c>Switchboard:Accounts</c>.</summary>
public sealed class AccountsOptions
{
    /// <summary>
    /// Argon2id memory in KiB. OWASP's minimum profile is 19 MiB with 2 passes; it costs tens of
    /// milliseconds here, enough to make guessing expensive without making login slow.
    /// </summary>
    public int Argon2MemoryKiB { get; set; } = 19 * 1024;

    /// <summary>Argon2id passes over memory.</summary>
    public int Argon2Passes { get; set; } = 2;

    /// <summary>
    /// Devices one user may have linked at once. WhatsApp allows a phone and four companions; a self-hosted
    /// server also carries bots and test devices, so the default leaves room.
    /// </summary>
    public int MaxDevicesPerUser { get; set; } = 16;

    /// <summary>Longest password accepted, so a huge password cannot be used to burn CPU.</summary>
    public int MaxPasswordLength { get; set; } = 1024;

    /// <summary>When a key fetch leaves a device with fewer one-time prekeys than this, its socket is told (<c>keys_low</c>).</summary>
    public int LowPrekeyCount { get; set; } = 10;

    /// <summary>Largest accepted HTTP request body in bytes.</summary>
    public int MaxRequestBodyBytes { get; set; } = 64 * 1024;

    internal void Validate()
    {
        if (Argon2MemoryKiB < 8 || Argon2Passes < 1)
        {
            throw new InvalidOperationException("Switchboard:Accounts: Argon2MemoryKiB must be at least 8 and Argon2Passes at least 1.");
        }

        if (LowPrekeyCount is < 0 or > 1000 || MaxDevicesPerUser < 1 || MaxPasswordLength < Protocol.Limits.MinPasswordLength || MaxRequestBodyBytes < 1024)
        {
            throw new InvalidOperationException("Switchboard:Accounts: limits out of range.");
        }
    }
}
