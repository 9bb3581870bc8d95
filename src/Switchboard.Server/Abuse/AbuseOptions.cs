namespace Switchboard.Server.Abuse;

/// <summary>A leaky bucket: up to <see cref="Burst"/> at once, then <see cref="PerMinute"/> more each minute.</summary>
public sealed class BucketOptions
{
    public int Burst { get; set; }

    public double PerMinute { get; set; }

    internal BucketOptions With(int burst, double perMinute)
    {
        Burst = burst;
        PerMinute = perMinute;
        return this;
    }

    internal void Validate(string name)
    {
        if (Burst < 1 || !(PerMinute > 0) || double.IsInfinity(PerMinute))
        {
            throw new InvalidOperationException($"Switchboard:Abuse:{name}: Burst must be at least 1 and PerMinute above 0.");
        }
    }
}

/// <summary>
/// Limits on what anyone can do before or around an account, bound from <c>Switchboard:Abuse</c>. Addresses are
/// the peer's, or the <c>X-Forwarded-For</c> one when the peer is in <c>Switchboard:TrustedProxies</c>; IPv6
/// addresses count per /64, the block one subscriber gets.
/// </summary>
public sealed class AbuseOptions
{
    /// <summary>
    /// The sign-up, login and device-link limits. Load tests that make thousands of accounts from one address turn
    /// them off (a warning at start says so). The bound on password hashing and the group limits stay on.
    /// </summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Password hashes (Argon2id, tens of MiB each) computed at once; 0: one per core.</summary>
    public int HashConcurrency { get; set; }

    /// <summary>Requests that may wait for a hash slot; beyond them, 429 <c>rate_limited</c>.</summary>
    public int HashQueue { get; set; } = 32;

    /// <summary>Accounts created per address.</summary>
    public BucketOptions RegistrationsPerAddress { get; set; } = new BucketOptions().With(10, 1);

    /// <summary>Device links (logins) tried per address, successful or not.</summary>
    public BucketOptions LinksPerAddress { get; set; } = new BucketOptions().With(20, 10);

    /// <summary>Failed logins per address.</summary>
    public BucketOptions LoginFailuresPerAddress { get; set; } = new BucketOptions().With(10, 2);

    /// <summary>Failed logins per account, from anywhere.</summary>
    public BucketOptions LoginFailuresPerAccount { get; set; } = new BucketOptions().With(10, 1);

    /// <summary>Groups a user creates.</summary>
    public BucketOptions GroupCreatesPerUser { get; set; } = new BucketOptions().With(20, 10);

    /// <summary>Members a user adds to groups (at creation or later), counted per member.</summary>
    public BucketOptions GroupAddsPerUser { get; set; } = new BucketOptions().With(4096, 1024);

    /// <summary>Key bundles a user fetches (each uses up one-time prekeys of the devices fetched).</summary>
    public BucketOptions KeyFetchesPerUser { get; set; } = new BucketOptions().With(200, 100);

    /// <summary>Addresses, accounts and users tracked per limit; past it, new keys share one bucket.</summary>
    public int MaxTrackedKeys { get; set; } = 100_000;

    internal int EffectiveHashConcurrency => HashConcurrency > 0 ? HashConcurrency : Environment.ProcessorCount;

    internal void Validate()
    {
        if (HashConcurrency is < 0 or > 1024 || HashQueue is < 0 or > 100_000 || MaxTrackedKeys is < 1 or > 10_000_000)
        {
            throw new InvalidOperationException("Switchboard:Abuse: HashConcurrency must be 0–1024, HashQueue 0–100000, MaxTrackedKeys 1–10000000.");
        }

        RegistrationsPerAddress.Validate(nameof(RegistrationsPerAddress));
        LinksPerAddress.Validate(nameof(LinksPerAddress));
        LoginFailuresPerAddress.Validate(nameof(LoginFailuresPerAddress));
        LoginFailuresPerAccount.Validate(nameof(LoginFailuresPerAccount));
        GroupCreatesPerUser.Validate(nameof(GroupCreatesPerUser));
        GroupAddsPerUser.Validate(nameof(GroupAddsPerUser));
        KeyFetchesPerUser.Validate(nameof(KeyFetchesPerUser));
    }
}
