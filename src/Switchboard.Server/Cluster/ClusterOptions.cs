namespace Switchboard.Server.Cluster;

/// <summary>
/// Cluster mode, bound from <c>Switchboard:Cluster</c> (env <c>Switchboard__Cluster__*</c>). Off by default: one
/// process with its embedded store. On, every node of the cluster runs the same binary with the same shards, Redis
/// and NATS, and its own <c>Switchboard:NodeId</c>.
/// </summary>
public sealed class ClusterOptions
{
    /// <summary>Runs as a node of a cluster: PostgreSQL shards for storage, Redis and NATS between nodes.</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// The PostgreSQL shards, as Npgsql connection strings, in shard order. A conversation lives on shard
    /// <c>hash(conversation) mod count</c> and a user's account on <c>hash(user) mod count</c>, so the list is the
    /// shard map: every node must have the same one, and it never changes length without moving data. Each shard
    /// records its place on first start, and a node whose list disagrees refuses to start.
    /// </summary>
    public string[] Shards { get; set; } = [];

    /// <summary>Redis (a StackExchange.Redis configuration string, <c>host:port</c>): presence, the session locator, the sign-up and login limits shared by the nodes.</summary>
    public string Redis { get; set; } = "";

    /// <summary>NATS (<c>nats://host:port</c>; core subjects only, no JetStream state): a subject per node for delivery hints, one for broadcasts.</summary>
    public string Nats { get; set; } = "";

    /// <summary>
    /// The cluster's name: the prefix of its keys in Redis and its subjects in NATS, so clusters (staging and
    /// production, say) can share those servers. Letters, digits, <c>-</c> and <c>_</c>.
    /// </summary>
    public string Name { get; set; } = "switchboard";

    /// <summary>Connections per shard and node (the Npgsql pool's maximum).</summary>
    public int MaxConnectionsPerShard { get; set; } = 32;

    /// <summary>How long a node's entries in the session locator live without a refresh; a dead node's lapse after this.</summary>
    public int LocatorTtlSeconds { get; set; } = 30;

    /// <summary>
    /// How often each node sweeps the conversations it delivered or heard of for events no hint announced, in
    /// seconds, when nothing showed a loss. A sign of one (a bus message skipped, NATS or Redis back after an outage)
    /// starts a sweep at once. A sweep reads the heads of every such conversation: each node's cost grows with
    /// them, so this is a safety net, not the way events travel.
    /// </summary>
    public int SweepSeconds { get; set; } = 30;

    /// <summary>Graceful shutdown: sockets are closed with 4003 spread over this many seconds, so clients do not all reconnect at once.</summary>
    public int DrainSeconds { get; set; } = 5;

    internal void Validate()
    {
        if (!Enabled)
        {
            return;
        }

        if (Shards.Length == 0 || Shards.Any(string.IsNullOrWhiteSpace))
        {
            throw new InvalidOperationException("Switchboard:Cluster:Shards must list at least one PostgreSQL connection string (Switchboard__Cluster__Shards__0=Host=…).");
        }

        if (string.IsNullOrWhiteSpace(Redis))
        {
            throw new InvalidOperationException("Switchboard:Cluster:Redis must name the Redis server (host:port).");
        }

        if (string.IsNullOrWhiteSpace(Nats))
        {
            throw new InvalidOperationException("Switchboard:Cluster:Nats must name the NATS server (nats://host:port).");
        }

        if (Name.Length is 0 or > 64 || !Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new InvalidOperationException("Switchboard:Cluster:Name must be 1–64 letters, digits, '-' or '_'.");
        }

        if (MaxConnectionsPerShard is < 2 or > 1_000)
        {
            throw new InvalidOperationException("Switchboard:Cluster:MaxConnectionsPerShard must be between 2 and 1000.");
        }

        if (LocatorTtlSeconds is < 5 or > 3_600)
        {
            throw new InvalidOperationException("Switchboard:Cluster:LocatorTtlSeconds must be between 5 and 3600.");
        }

        if (SweepSeconds is < 1 or > 3_600)
        {
            throw new InvalidOperationException("Switchboard:Cluster:SweepSeconds must be between 1 and 3600.");
        }

        if (DrainSeconds is < 0 or > 600)
        {
            throw new InvalidOperationException("Switchboard:Cluster:DrainSeconds must be between 0 and 600.");
        }
    }
}
