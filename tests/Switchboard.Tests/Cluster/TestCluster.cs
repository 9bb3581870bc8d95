namespace Switchboard.Tests.Cluster;

/// <summary>
/// Real server nodes in cluster mode, each on its own loopback port, on the real PostgreSQL shards, Redis and NATS
/// (<see cref="ClusterServices"/>). Every cluster has a name and a schema of its own, so clusters of tests that run
/// at once never see each other's keys, subjects or rows.
/// </summary>
internal sealed class TestCluster : IAsyncDisposable
{
    private static int _nodeIds;
    private readonly Dictionary<string, string?> _extra;
    private readonly int[] _nodeIdsOfCluster;

    private readonly ClusterServices.Settings _services;

    private TestCluster(string name, int nodes, Dictionary<string, string?> extra, ClusterServices.Settings services)
    {
        Name = name;
        _services = services;
        _extra = extra;
        _nodeIdsOfCluster = [.. Enumerable.Range(0, nodes).Select(_ => Interlocked.Increment(ref _nodeIds) % 1000 + 1)];
        Nodes = new TestServer[nodes];
    }

    public string Name { get; }

    public TestServer[] Nodes { get; }

    public TestServer this[int index] => Nodes[index];

    /// <summary>Settings of one node only, over the cluster's (a node reaching Redis through a fault proxy, say).</summary>
    public Dictionary<int, Dictionary<string, string?>> NodeSettings { get; } = [];

    public static async Task<TestCluster> StartAsync(int nodes, IDictionary<string, string?>? settings = null, ClusterServices.Settings? services = null, Dictionary<int, Dictionary<string, string?>>? nodeSettings = null)
    {
        var cluster = new TestCluster("t" + Guid.NewGuid().ToString("N")[..10], nodes, new Dictionary<string, string?>(settings ?? new Dictionary<string, string?>()), services ?? ClusterServices.Current);
        foreach (var (index, own) in nodeSettings ?? [])
        {
            cluster.NodeSettings[index] = own;
        }

        cluster._services.ShardsIn(cluster.Name); // the schema, on both shards
        for (var i = 0; i < nodes; i++)
        {
            cluster.Nodes[i] = await TestServer.StartAsync(cluster.SettingsOf(i));
        }

        return cluster;
    }

    /// <summary>A cluster's name, schema and node settings, with no node started (for nodes run as processes).</summary>
    public static TestCluster Plan(int nodes, IDictionary<string, string?>? settings = null)
    {
        var cluster = new TestCluster("t" + Guid.NewGuid().ToString("N")[..10], nodes, new Dictionary<string, string?>(settings ?? new Dictionary<string, string?>()), ClusterServices.Current);
        cluster._services.ShardsIn(cluster.Name);
        return cluster;
    }

    /// <summary>Node <paramref name="index"/>'s settings, as an operator would give them.</summary>
    public Dictionary<string, string?> SettingsOf(int index)
    {
        var services = _services;
        var shards = services.ShardsIn(Name);
        var settings = new Dictionary<string, string?>
        {
            ["Switchboard:NodeId"] = _nodeIdsOfCluster[index].ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Switchboard:Cluster:Enabled"] = "true",
            ["Switchboard:Cluster:Name"] = Name,
            ["Switchboard:Cluster:Shards:0"] = shards[0],
            ["Switchboard:Cluster:Shards:1"] = shards[1],
            ["Switchboard:Cluster:Redis"] = services.Redis,
            ["Switchboard:Cluster:Nats"] = services.Nats,
            ["Switchboard:Cluster:SweepSeconds"] = "1",
            ["Switchboard:Cluster:LocatorTtlSeconds"] = "6",
            ["Switchboard:Cluster:MaxConnectionsPerShard"] = "8",
        };
        foreach (var (key, value) in _extra.Concat(NodeSettings.GetValueOrDefault(index) ?? []))
        {
            settings[key] = value;
        }

        return settings;
    }

    /// <summary>Stops node <paramref name="index"/> and starts it again with the same settings (a new incarnation).</summary>
    public async Task<TestServer> RestartAsync(int index)
    {
        await Nodes[index].DisposeAsync();
        Nodes[index] = await TestServer.StartAsync(SettingsOf(index));
        return Nodes[index];
    }

    /// <summary>Waits until every node has read every other as alive in Redis (they announce themselves every second).</summary>
    public async Task WaitUntilMeshedAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            if (Nodes.All(n => n.Services.GetRequiredService<Switchboard.Server.Cluster.RedisSessionRouter>().AliveNodes.Count >= Nodes.Length))
            {
                return;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException("the nodes did not see each other in Redis");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            if (node is not null)
            {
                await node.DisposeAsync();
            }
        }

        try
        {
            _services.DropSchema(Name);
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
        {
        }
    }
}

/// <summary>A node of a cluster (on the real PostgreSQL shards, Redis and NATS), for the tests that run in both modes.</summary>
public sealed class ClusterNodeFixture : IAsyncLifetime, IServerFixture
{
    private TestCluster? _cluster;

    public TestServer Server => _cluster![0];

    public async Task InitializeAsync() => _cluster = await TestCluster.StartAsync(1);

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
