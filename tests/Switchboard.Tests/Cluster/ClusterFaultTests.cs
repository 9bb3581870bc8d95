using System.Net;
using System.Text.Json;
using Switchboard.Server.Storage.Postgres;

namespace Switchboard.Tests.Cluster;

/// <summary>
/// Faults of the parts a cluster stands on, each under a load of sends: Redis and NATS may lose everything and
/// nothing acked is lost, nothing is delivered that was not stored, and a conversation's history keeps its order;
/// a PostgreSQL shard that stops refuses only its own conversations, never acking what it did not store. Every
/// test here runs on services of its own, since it stops them.
/// </summary>
public sealed class ClusterFaultTests
{
    private const int Sends = 120;

    [Fact]
    public async Task Redis_restarted_empty_under_load_loses_nothing()
    {
        using var services = ClusterServices.StartPrivate();
        await RunUnderFaultAsync(services.Settings, new Dictionary<string, string?>(), (i, _) =>
        {
            if (i == Sends / 4)
            {
                services.Stop("redis");
            }
            else if (i == Sends / 2)
            {
                services.Start("redis"); // no persistence: it comes back empty
            }
        });
    }

    [Fact]
    public async Task NATS_restarted_with_its_state_wiped_under_load_loses_nothing()
    {
        using var services = ClusterServices.StartPrivate();
        await RunUnderFaultAsync(services.Settings, new Dictionary<string, string?>(), (i, _) =>
        {
            if (i == Sends / 4)
            {
                services.Stop("nats");
            }
            else if (i == Sends / 2)
            {
                services.Start("nats", wipe: true);
            }
        });
    }

    [Fact]
    public async Task A_node_cut_from_Redis_and_NATS_still_gets_and_gives_every_message()
    {
        using var services = ClusterServices.StartPrivate();
        var redisPort = int.Parse(services.Settings.Redis.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        await using var redis = new FaultProxy(new Uri($"tcp://127.0.0.1:{redisPort}"));
        await using var nats = new FaultProxy(new Uri(services.Settings.Nats));
        var second = new Dictionary<string, string?>
        {
            ["Switchboard:Cluster:Redis"] = $"127.0.0.1:{redis.Url.Port}",
            ["Switchboard:Cluster:Nats"] = $"nats://127.0.0.1:{nats.Url.Port}",
        };
        await RunUnderFaultAsync(services.Settings, second, (i, _) =>
        {
            if (i == Sends / 4)
            {
                redis.Refusing = nats.Refusing = true;
                redis.CutAll();
                nats.CutAll();
            }
            else if (i == Sends * 3 / 4)
            {
                redis.Refusing = nats.Refusing = false;
            }
        });
    }

    [Fact]
    public async Task A_hint_lost_without_a_sign_is_repaired_by_the_hole_the_next_event_leaves()
    {
        await using var nats = new FaultProxy(new Uri(ClusterServices.Current.Nats)); // shared services: only the proxy fails
        var (cluster, alice, aliceReads, bob, conv) = await TwoNodesAsync(nats);
        await using var _ = cluster;

        nats.Refusing = true; // what node 2 publishes from now on never reaches node 1, and nothing tells node 1
        nats.CutAll();
        var lost = (await bob.SendAckedAsync(conv, "hint lost")).GetProperty("seq").GetInt64();
        var next = (await alice.SendAckedAsync(conv, "after it")).GetProperty("seq").GetInt64();
        Assert.Equal(lost + 1, next);

        // Node 1 wrote seq `next` and never heard of `lost`: once the grace is past it reads the hole from the store.
        var repaired = await aliceReads.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == lost, TimeSpan.FromSeconds(20));
        Assert.Equal("hint lost", repaired.GetProperty("body").GetString());
    }

    [Fact]
    public async Task A_node_that_could_not_publish_tells_the_others_to_sweep_when_it_is_back()
    {
        await using var nats = new FaultProxy(new Uri(ClusterServices.Current.Nats)); // shared services: only the proxy fails
        var (cluster, _, aliceReads, bob, conv) = await TwoNodesAsync(nats);
        await using var _ = cluster;

        nats.Refusing = true;
        nats.CutAll();
        var lost = (await bob.SendAckedAsync(conv, "published while away")).GetProperty("seq").GetInt64();
        await Task.Delay(1_000);
        nats.Refusing = false; // node 2 reconnects; nothing else is sent in the conversation

        var repaired = await aliceReads.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == lost, TimeSpan.FromSeconds(20));
        Assert.Equal("published while away", repaired.GetProperty("body").GetString());
    }

    /// <summary>Alice on node 1 (sending, and reading on a second device there), Bob on node 2, whose NATS goes through <paramref name="nats"/>; no periodic sweep.</summary>
    private static async Task<(TestCluster Cluster, TestClient Alice, TestClient AliceReads, TestClient Bob, string Conv)> TwoNodesAsync(FaultProxy nats)
    {
        var second = new Dictionary<string, string?> { ["Switchboard:Cluster:Nats"] = $"nats://127.0.0.1:{nats.Url.Port}" };
        var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string?> { ["Switchboard:Cluster:SweepSeconds"] = "600" }, nodeSettings: new() { [1] = second });
        await cluster.WaitUntilMeshedAsync();
        var alice = await cluster[0].NewClientAsync();
        var bob = await cluster[1].NewClientAsync();
        var aliceReads = await cluster[0].NewDeviceAsync(alice.User);
        var conv = Conv.Direct(alice.User, bob.User);
        await bob.SendAckedAsync(conv, "hello");
        await aliceReads.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "hello", TimeSpan.FromSeconds(20)); // node 1 watches the conversation
        return (cluster, alice, aliceReads, bob, conv);
    }

    [Fact]
    public async Task A_group_change_whose_broadcast_was_lost_is_seen_by_every_node_within_seconds()
    {
        using var services = ClusterServices.StartPrivate();
        await using var nats = new FaultProxy(new Uri(services.Settings.Nats));
        var second = new Dictionary<string, string?> { ["Switchboard:Cluster:Nats"] = $"nats://127.0.0.1:{nats.Url.Port}" };
        // No sweep (it too would re-read the group, on the moved head): the age of the cached copy alone.
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string?> { ["Switchboard:Cluster:SweepSeconds"] = "600" }, services.Settings, new() { [1] = second });
        var alice = await cluster[0].NewClientAsync();
        var bob = await cluster[1].NewClientAsync();
        var (created, group) = await cluster[0].CallAsync(HttpMethod.Post, "/v1/groups", alice.Token, new { name = "team", members = new[] { bob.User } });
        Assert.Equal(HttpStatusCode.Created, created);
        var conv = group.GetProperty("conv").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await cluster[1].GetAsync($"/v1/groups/{conv}", bob.Token)).Status); // cached on node 2

        nats.Refusing = true; // node 2 hears nothing from the others
        nats.CutAll();
        var (removed, _) = await cluster[0].CallAsync(HttpMethod.Delete, $"/v1/groups/{conv}/members/{bob.User}", alice.Token);
        Assert.True(removed is HttpStatusCode.OK or HttpStatusCode.NoContent, removed.ToString());

        // Node 2 never heard of the change; it reads the group again once its copy is ten seconds old.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var (status, seen) = await cluster[1].GetAsync($"/v1/groups/{conv}", bob.Token);
            if (status != HttpStatusCode.OK || !seen.GetProperty("members").EnumerateArray().Any(m => m.GetProperty("user").GetString() == bob.User))
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "node 2 still has bob in the group 30 s after he was removed");
            await Task.Delay(500);
        }
    }

    /// <summary>
    /// Alice (node 1) and Bob (node 2) send to each other while <paramref name="fault"/> strikes; then each has every
    /// message the other had acked, and the history (through either node) is every acked message once, in seq order.
    /// </summary>
    private static async Task RunUnderFaultAsync(ClusterServices.Settings services, Dictionary<string, string?> secondNode, Action<int, TestCluster> fault)
    {
        // No periodic sweep within the test: what was lost is found by the signs of loss (a bus message skipped, NATS
        // or Redis back after an outage) that start one.
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string?> { ["Switchboard:Cluster:SweepSeconds"] = "600" }, services, new() { [1] = secondNode });
        await cluster.WaitUntilMeshedAsync();
        // Each user sends from one device and reads on another, so the reader sees nothing but deliveries.
        var alice = await cluster[0].NewClientAsync();
        var bob = await cluster[1].NewClientAsync();
        var aliceReads = await cluster[0].NewDeviceAsync(alice.User);
        var bobReads = await cluster[1].NewDeviceAsync(bob.User);
        var conv = Conv.Direct(alice.User, bob.User);
        var toBob = new List<long>();
        var toAlice = new List<long>();
        var bobGot = Collect(bobReads, conv, alice.User);
        var aliceGot = Collect(aliceReads, conv, bob.User);
        for (var i = 0; i < Sends; i++)
        {
            fault(i, cluster);
            toBob.Add((await alice.SendAckedAsync(conv, $"a{i}")).GetProperty("seq").GetInt64());
            toAlice.Add((await bob.SendAckedAsync(conv, $"b{i}")).GetProperty("seq").GetInt64());
            await Task.Delay(15);
        }

        await WaitForAllAsync(bobGot, toBob);
        await WaitForAllAsync(aliceGot, toAlice);
        foreach (var node in cluster.Nodes)
        {
            var seqs = await HistoryAsync(node, conv, alice.Token);
            Assert.Equal(Enumerable.Range(1, Sends * 2).Select(i => (long)i), seqs);
        }
    }

    [Fact]
    public async Task A_stopped_shard_refuses_its_conversations_without_acking_and_the_other_shard_goes_on()
    {
        using var services = ClusterServices.StartPrivate();
        await using var cluster = await TestCluster.StartAsync(2, services: services.Settings);
        await cluster.WaitUntilMeshedAsync();

        // Everyone's account on shard 1; one conversation on each shard.
        await using var map = new PgShards(services.Settings.Shards, 2);
        string OnShard(int shard, Func<string, bool>? also = null)
        {
            while (true)
            {
                var user = TestServer.NewUser("s");
                if (map.ForUser(user) == 0 && (also?.Invoke(user) ?? true))
                {
                    return user;
                }
            }
        }

        var aliceUser = OnShard(0);
        var bobUser = OnShard(0, u => map.ForConversation(Conv.Direct(aliceUser, u)) == 0);
        var carolUser = OnShard(0, u => map.ForConversation(Conv.Direct(aliceUser, u)) == 1);
        var alice = await cluster[0].NewClientAsync(await cluster[0].RegisterAsync(aliceUser));
        var bob = await cluster[1].NewClientAsync(await cluster[1].RegisterAsync(bobUser));
        var carol = await cluster[1].NewClientAsync(await cluster[1].RegisterAsync(carolUser));
        var onFirst = Conv.Direct(aliceUser, bobUser);
        var onSecond = Conv.Direct(aliceUser, carolUser);
        await alice.SendAckedAsync(onFirst, "before");
        await alice.SendAckedAsync(onSecond, "before");

        services.Stop("pg2");
        var refusedCid = Guid.NewGuid().ToString();
        await alice.SendTextAsync(onSecond, "while shard 2 is down", refusedCid);
        var answer = await alice.ExpectAsync("error", f => f.GetProperty("ref").GetString() == refusedCid, TimeSpan.FromSeconds(30));
        Assert.Equal("unavailable", answer.GetProperty("code").GetString());
        for (var i = 0; i < 5; i++)
        {
            await alice.SendAckedAsync(onFirst, $"shard 1 goes on {i}"); // unaffected
        }

        await bob.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "shard 1 goes on 4");

        services.Start("pg2");
        JsonElement ack = default;
        for (var attempt = 0; attempt < 60 && ack.ValueKind != JsonValueKind.Object; attempt++)
        {
            // The client retries with the same cid until the shard is back; the message is stored once.
            await alice.SendTextAsync(onSecond, "while shard 2 is down", refusedCid);
            var frame = await AnswerAsync(alice, refusedCid);
            if (frame.GetProperty("t").GetString() == "ack")
            {
                ack = frame;
            }
            else
            {
                Assert.Equal("unavailable", frame.GetProperty("code").GetString());
                await Task.Delay(500);
            }
        }

        Assert.Equal(JsonValueKind.Object, ack.ValueKind);
        Assert.False(ack.GetProperty("dup").GetBoolean());
        var delivered = await carol.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "while shard 2 is down", TimeSpan.FromSeconds(30));
        Assert.Equal(ack.GetProperty("seq").GetInt64(), delivered.GetProperty("seq").GetInt64());
        Assert.Equal([1L, 2], await HistoryAsync(cluster[1], onSecond, alice.Token));
    }

    /// <summary>The ack or the error that answers <paramref name="cid"/>.</summary>
    private static async Task<JsonElement> AnswerAsync(TestClient client, string cid)
    {
        while (true)
        {
            var frame = await client.NextAsync(TimeSpan.FromSeconds(30));
            var t = frame.GetProperty("t").GetString();
            if ((t == "ack" && frame.GetProperty("cid").GetString() == cid) || (t == "error" && frame.TryGetProperty("ref", out var r) && r.GetString() == cid))
            {
                return frame;
            }
        }
    }

    /// <summary>Every seq of the conversation's history through this node, paging back from the newest.</summary>
    private static async Task<List<long>> HistoryAsync(TestServer node, string conv, string token)
    {
        var seqs = new List<long>();
        long? before = null;
        while (true)
        {
            var (status, history) = await node.GetAsync($"/v1/conversations/{conv}/messages?limit=100{(before is { } b ? $"&before={b}" : "")}", token);
            Assert.Equal(HttpStatusCode.OK, status);
            var page = history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()).ToList();
            if (page.Count == 0)
            {
                break;
            }

            seqs.AddRange(page);
            before = page.Min();
        }

        Assert.Equal(seqs.Count, seqs.Distinct().Count()); // each event once
        return [.. seqs.Order()];
    }

    /// <summary>Every distinct seq of <paramref name="from"/>'s messages the client receives, as they come.</summary>
    private static HashSet<long> Collect(TestClient client, string conv, string from)
    {
        var seen = new HashSet<long>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                JsonElement frame;
                try
                {
                    frame = await client.ExpectAsync("msg", f => f.GetProperty("conv").GetString() == conv && f.GetProperty("from").GetString() == from, TimeSpan.FromMinutes(5));
                }
                catch (Exception)
                {
                    return;
                }

                lock (seen)
                {
                    seen.Add(frame.GetProperty("seq").GetInt64());
                }
            }
        });
        return seen;
    }

    private static async Task WaitForAllAsync(HashSet<long> seen, List<long> expected)
    {
        var deadline = DateTime.UtcNow.AddSeconds(45);
        while (true)
        {
            lock (seen)
            {
                if (expected.All(seen.Contains))
                {
                    Assert.True(seen.IsSubsetOf(expected), "a message was delivered that was never acked");
                    return;
                }
            }

            Assert.True(DateTime.UtcNow < deadline, $"still missing {string.Join(',', expected.Where(s => !seen.Contains(s)).Take(10))}");
            await Task.Delay(100);
        }
    }
}
