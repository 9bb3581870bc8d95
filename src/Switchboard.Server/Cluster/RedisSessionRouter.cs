using System.Collections.Concurrent;
using System.Globalization;
using StackExchange.Redis;
using Switchboard.Server.Routing;

namespace Switchboard.Server.Cluster;

/// <summary>
/// The session locator of a cluster, in Redis (keys prefixed with the cluster's name): per user one hash, device → <c>node:incarnation:connection</c>, with
/// a TTL every node refreshes for the sessions it holds (and writes again, so a Redis that restarted empty is
/// whole again within one refresh). A node announces itself in <c>{name}:nodes</c> (node → incarnation and until
/// when it is alive); an entry whose node is not alive in that incarnation is a dead node's, ignored and lapsing.
/// This node's own sessions are also kept in memory (<see cref="InMemorySessionRouter"/>): when Redis cannot be
/// reached, answers fall back to them and messages still reach this node's sockets (and everyone else's from the
/// store by cursor), never blocking a connect.
/// </summary>
internal sealed partial class RedisSessionRouter : ISessionRouter, IAsyncDisposable
{
    private const string AddScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return redis.call('HVALS', KEYS[1])
        """;

    private const string RemoveScript = """
        if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
        return redis.call('HVALS', KEYS[1])
        """;

    private readonly InMemorySessionRouter _local = new();
    private readonly ConcurrentDictionary<(string User, int Device), long> _sessions = new();
    private readonly ClusterNode _node;
    private readonly ClusterOptions _options;
    private readonly ILogger<RedisSessionRouter> _logger;
    private readonly IConnectionMultiplexer _redis;
    private volatile Dictionary<int, long> _alive = [];

    public RedisSessionRouter(ClusterNode node, Microsoft.Extensions.Options.IOptions<ClusterOptions> clusterOptions, ILogger<RedisSessionRouter> logger)
    {
        var options = clusterOptions.Value;
        _outage = new OutageLog(LogRedisFailed);
        _node = node;
        _options = options;
        _logger = logger;
        var config = ConfigurationOptions.Parse(options.Redis);
        config.AbortOnConnectFail = false; // start, and reconnect, whether or not Redis is up
        config.ConnectTimeout = 2_000;
        config.SyncTimeout = config.AsyncTimeout = 1_000; // a Redis that does not answer is treated as gone, fast
        config.ClientName = $"switchboard-node-{node.Id}";
        _redis = ConnectionMultiplexer.Connect(config);
        _redis.ConnectionRestored += (_, _) =>
        {
            _ = RefreshAsync(); // an empty Redis after a restart is filled at once
            Restored?.Invoke(); // what other nodes could not locate meanwhile was never hinted
        };
    }

    public IDatabase Database => _redis.GetDatabase();

    /// <summary>Called when the connection to Redis comes back.</summary>
    public Action? Restored { get; set; }

    private RedisKey KeyOf(string user) => $"{_options.Name}:loc:{user}";

    private RedisKey NodesKey => $"{_options.Name}:nodes";

    /// <summary>A key of this cluster in Redis.</summary>
    public RedisKey Key(string suffix) => $"{_options.Name}:{suffix}";

    private string ValueOf(long connectionId) => string.Create(CultureInfo.InvariantCulture, $"{_node.Id}:{_node.Incarnation}:{connectionId}");

    private long TtlMs => _options.LocatorTtlSeconds * 1000L;

    public int Count => _local.Count;

    public async ValueTask<bool> AddAsync(string user, int device, long connectionId)
    {
        var first = await _local.AddAsync(user, device, connectionId);
        _sessions[(user, device)] = connectionId;
        try
        {
            var values = (RedisValue[])(await Database.ScriptEvaluateAsync(AddScript, [KeyOf(user)], [device, ValueOf(connectionId), TtlMs]))!;
            return first && LiveEntries(values) <= 1;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
            return first;
        }
    }

    public async ValueTask<bool> RemoveAsync(string user, int device, long connectionId)
    {
        var last = await _local.RemoveAsync(user, device, connectionId);
        _sessions.TryRemove(new KeyValuePair<(string, int), long>((user, device), connectionId));
        try
        {
            var values = (RedisValue[])(await Database.ScriptEvaluateAsync(RemoveScript, [KeyOf(user)], [device, ValueOf(connectionId)]))!;
            return last && LiveEntries(values) == 0;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
            return last;
        }
    }

    public async ValueTask<bool> IsOnlineAsync(string user)
    {
        if (await _local.IsOnlineAsync(user))
        {
            return true;
        }

        try
        {
            return LiveEntries(await Database.HashValuesAsync(KeyOf(user))) > 0;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
            return false;
        }
    }

    public async ValueTask<IReadOnlyCollection<int>> DevicesOnlineElsewhereAsync(string user)
    {
        var devices = new List<int>();
        try
        {
            var alive = _alive;
            foreach (var entry in await Database.HashGetAllAsync(KeyOf(user)))
            {
                if (Parse(entry.Value) is { } where && where.Node != _node.Id && IsAlive(alive, where) && int.TryParse((string?)entry.Name, CultureInfo.InvariantCulture, out var device))
                {
                    devices.Add(device);
                }
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
        }

        return devices;
    }

    /// <summary>
    /// The other nodes holding a socket of each user, in one round trip (pipelined). Users without one elsewhere
    /// are left out; null when Redis cannot be read.
    /// </summary>
    public async Task<Dictionary<int, List<string>>?> LocateAsync(IReadOnlyCollection<string> users)
    {
        var byNode = new Dictionary<int, List<string>>();
        if (users.Count == 0)
        {
            return byNode;
        }

        try
        {
            var batch = Database.CreateBatch();
            var lookups = users.Select(u => (User: u, Values: batch.HashValuesAsync(KeyOf(u)))).ToList();
            batch.Execute();
            var found = new List<(string User, RedisValue[] Values)>(lookups.Count);
            var unknownNode = false;
            foreach (var (user, values) in lookups)
            {
                var entries = await values;
                found.Add((user, entries));
                foreach (var value in entries)
                {
                    unknownNode |= Parse(value) is { } entry && !_alive.ContainsKey(entry.Node);
                }
            }

            if (unknownNode && Environment.TickCount64 - Interlocked.Read(ref _aliveReadAt) > 200)
            {
                await ReadAliveAsync(); // a node that started since the last read: learn of it now, not in a second
            }

            var alive = _alive;
            foreach (var (user, entries) in found)
            {
                foreach (var value in entries)
                {
                    if (Parse(value) is { } entry && entry.Node != _node.Id && IsAlive(alive, entry))
                    {
                        if (!byNode.TryGetValue(entry.Node, out var list))
                        {
                            byNode[entry.Node] = list = [];
                        }

                        if (list.Count == 0 || list[^1] != user)
                        {
                            list.Add(user); // two devices of a user on one node: listed once
                        }
                    }
                }
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
            return null;
        }

        return byNode;
    }

    /// <summary>
    /// Announces this node as alive, writes every session it holds again with a fresh TTL, and reads which nodes
    /// are alive. Run every third of the TTL, and at once when the connection to Redis comes back.
    /// </summary>
    public async Task RefreshAsync()
    {
        try
        {
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var batch = Database.CreateBatch();
            var writes = new List<Task>
            {
                batch.HashSetAsync(NodesKey, _node.Id, string.Create(CultureInfo.InvariantCulture, $"{_node.Incarnation}:{now + TtlMs}")),
            };
            foreach (var ((user, device), connection) in _sessions)
            {
                writes.Add(batch.HashSetAsync(KeyOf(user), device, ValueOf(connection)));
                writes.Add(batch.KeyExpireAsync(KeyOf(user), TimeSpan.FromMilliseconds(TtlMs)));
            }

            var nodes = batch.HashGetAllAsync(NodesKey);
            batch.Execute();
            await Task.WhenAll(writes);
            ReadAlive(await nodes, now);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
        }
    }

    /// <summary>Reads which nodes are alive (cheap: one hash); between refreshes.</summary>
    public async Task ReadAliveAsync()
    {
        try
        {
            ReadAlive(await Database.HashGetAllAsync(NodesKey), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
        }
    }

    private long _aliveReadAt;

    private void ReadAlive(HashEntry[] entries, long now)
    {
        Interlocked.Exchange(ref _aliveReadAt, Environment.TickCount64);
        var alive = new Dictionary<int, long>();
        foreach (var entry in entries)
        {
            var parts = ((string?)entry.Value ?? "").Split(':');
            if (parts.Length == 2 && int.TryParse((string?)entry.Name, out var node) && long.TryParse(parts[0], out var incarnation)
                && long.TryParse(parts[1], out var until) && until > now)
            {
                alive[node] = incarnation;
            }
        }

        alive[_node.Id] = _node.Incarnation;
        _alive = alive;
    }

    /// <summary>Nodes alive now, as last read.</summary>
    public IReadOnlyDictionary<int, long> AliveNodes => _alive;

    /// <summary>Says this node is leaving, so its entries are ignored at once (graceful shutdown).</summary>
    public async Task LeaveAsync()
    {
        try
        {
            await Database.HashDeleteAsync(NodesKey, _node.Id);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Failed(ex);
        }
    }

    private int LiveEntries(RedisValue[] values)
    {
        var alive = _alive;
        var count = 0;
        foreach (var value in values)
        {
            if (Parse(value) is { } entry && (entry.Node == _node.Id ? entry.Incarnation == _node.Incarnation : IsAlive(alive, entry)))
            {
                count++;
            }
        }

        return count;
    }

    private static bool IsAlive(Dictionary<int, long> alive, (int Node, long Incarnation) entry) =>
        alive.TryGetValue(entry.Node, out var incarnation) && incarnation == entry.Incarnation;

    private static (int Node, long Incarnation)? Parse(RedisValue value)
    {
        var text = ((string?)value ?? "").AsSpan();
        var first = text.IndexOf(':');
        if (first < 0)
        {
            return null;
        }

        var rest = text[(first + 1)..];
        var second = rest.IndexOf(':');
        return second > 0 && int.TryParse(text[..first], CultureInfo.InvariantCulture, out var node) && long.TryParse(rest[..second], CultureInfo.InvariantCulture, out var incarnation)
            ? (node, incarnation)
            : null;
    }

    private void Failed(Exception ex) => _outage.Failed(ex);

    private readonly OutageLog _outage;

    [LoggerMessage(EventId = 1401, Level = LogLevel.Warning, Message = "Redis unavailable ({Reason}); this node routes to its own sockets only and other nodes' deliveries come from the store")]
    private partial void LogRedisFailed(string reason);

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _redis.DisposeAsync();
        }
    }
}

/// <summary>This node in the cluster: its number (<c>Switchboard:NodeId</c>) and an incarnation new at every start.</summary>
internal sealed class ClusterNode(int id)
{
    public int Id { get; } = id;

    /// <summary>Tells this run of the node from an earlier one that died with entries left in Redis.</summary>
    public long Incarnation { get; } = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 + Random.Shared.Next(1000);
}
