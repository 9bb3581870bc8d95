using System.Threading.Channels;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Tests.Cluster;

/// <summary>
/// A node is disposable: killed with SIGKILL under load, or stopped gracefully, its clients (the SDK, given the
/// other nodes) go on through another node and resume by cursor; nothing acked is lost, nothing is shown twice,
/// and every conversation keeps its order.
/// </summary>
public sealed class NodeLossTests
{
    private static readonly SwitchboardClientOptions Fast = new()
    {
        ReconnectBaseDelay = TimeSpan.FromMilliseconds(50),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
    };

    [Fact]
    public async Task A_node_killed_under_load_and_restarted_loses_nothing_acked_and_its_clients_go_on_elsewhere()
    {
        await using var plan = TestCluster.Plan(2);
        var dirs = new[] { NewDir(), NewDir() };
        var nodeA = await ServerProcess.StartAsync(dirs[0], plan.SettingsOf(0));
        await using var nodeB = await ServerProcess.StartAsync(dirs[1], plan.SettingsOf(1));
        try
        {
            var alice = TestServer.NewUser("ka");
            var bob = TestServer.NewUser("kb");
            await nodeA.RegisterAsync(alice);
            await nodeB.RegisterAsync(bob);
            var aliceToken = await nodeA.LinkAsync(alice, "correct horse");
            var bobToken = await nodeB.LinkAsync(bob, "correct horse");
            var conv = Conv.Direct(alice, bob);

            await using var aliceClient = new SwitchboardClient(nodeA.Url, aliceToken, Fast with { OtherServers = [nodeB.Url] });
            await using var bobClient = new SwitchboardClient(nodeB.Url, bobToken, Fast with { OtherServers = [nodeA.Url] });
            using var stop = new CancellationTokenSource();
            var (seen, arrivals, pump) = Collect(bobClient, stop.Token);
            await aliceClient.ConnectAsync();
            await bobClient.ConnectAsync();

            const int Count = 150;
            var acked = new List<long>();
            for (var i = 0; i < Count; i++)
            {
                if (i == Count / 3)
                {
                    nodeA.Kill(); // SIGKILL: no drain, no flush; alice's sends in flight are resent with their cids
                }
                else if (i == Count * 2 / 3)
                {
                    nodeA = await ServerProcess.StartAsync(dirs[0], plan.SettingsOf(0), nodeA.Port); // back, new incarnation
                }

                acked.Add((await aliceClient.SendTextAsync(conv, $"m{i:D3}").WaitAsync(TimeSpan.FromSeconds(60))).Seq);
            }

            Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), acked);
            Assert.Equal(nodeB.Url, aliceClient.Server); // moved to the other node when its own died
            await WaitForAsync(arrivals, m => m.Seq == Count);
            await Task.Delay(300); // anything duplicated would show up now
            lock (seen)
            {
                Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), seen.Select(m => m.Seq));
                Assert.Equal(Enumerable.Range(0, Count).Select(i => $"m{i:D3}"), seen.Select(m => m.Body));
            }

            var history = await nodeA.HistoryAsync(conv, bobToken);
            Assert.Equal(Count, history.Count);
            Assert.Equal(Count, history.Select(h => h.Cid).Distinct().Count());
            stop.Cancel();
            await pump;
        }
        finally
        {
            await nodeA.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_node_stopped_gracefully_closes_its_sockets_with_4003_and_its_clients_go_on_through_another()
    {
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string?> { ["Switchboard:Cluster:DrainSeconds"] = "1" });
        await cluster.WaitUntilMeshedAsync();
        var aliceUser = await cluster[0].RegisterAsync();
        var (_, aliceToken) = await cluster[0].LinkAsync(aliceUser);
        var bob = await cluster[1].NewClientAsync();
        var conv = Conv.Direct(aliceUser, bob.User);
        var (rawDevice, rawToken) = await cluster[0].LinkAsync(aliceUser); // a second device, to watch the close itself
        var raw = await TestClient.ConnectAsync(cluster[0], aliceUser, rawDevice, rawToken);
        await raw.ExpectAsync("live");
        await using var alice = new SwitchboardClient(cluster[0].Address, aliceToken, Fast with { OtherServers = [cluster[1].Address] });
        await alice.ConnectAsync();
        Assert.Equal(1, (await alice.SendTextAsync(conv, "before")).Seq);

        var stopping = cluster[0].StopAsync();
        Assert.Equal(CloseCodes.Draining, await raw.WaitClosedAsync());
        await stopping;

        Assert.Equal(2, (await alice.SendTextAsync(conv, "after").WaitAsync(TimeSpan.FromSeconds(30))).Seq);
        Assert.Equal(cluster[1].Address, alice.Server);
        await bob.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "after");
    }

    [Fact]
    public async Task Watchers_on_another_node_see_the_users_of_a_killed_node_go_offline()
    {
        // Heartbeat 2 s: a presence lasts 4 s without a frame.
        var plan = TestCluster.Plan(2, new Dictionary<string, string?> { ["Switchboard:Gateway:HeartbeatSeconds"] = "2" });
        await using var cleanup = plan;
        await using var nodeA = await TestServer.StartAsync(plan.SettingsOf(0));
        var nodeB = await ServerProcess.StartAsync(NewDir(), plan.SettingsOf(1));
        try
        {
            var alice = await nodeA.NewClientAsync();
            var bobUser = await nodeA.RegisterAsync();
            var bobToken = await nodeB.LinkAsync(bobUser, "correct horse");
            await using var bob = new SwitchboardClient(nodeB.Url, bobToken, Fast);
            await bob.ConnectAsync();
            await alice.SendAckedAsync(Conv.Direct(alice.User, bobUser), "are you there?");

            await alice.SendAsync(new { t = "watch", users = new[] { bobUser } });
            Assert.True((await alice.ExpectAsync("presence", timeout: TimeSpan.FromSeconds(30))).GetProperty("online").GetBoolean());
            nodeB.Kill(); // no close, no offline delta from it: its users' presence lapses in Redis

            var offline = await alice.ExpectAsync("presence", f => !f.GetProperty("online").GetBoolean(), TimeSpan.FromSeconds(30));
            Assert.True(offline.GetProperty("last_seen").GetInt64() > 0);
        }
        finally
        {
            await nodeB.DisposeAsync();
        }
    }

    private static string NewDir() => Path.Combine(Path.GetTempPath(), "switchboard-node-" + Guid.NewGuid().ToString("N"));

    private static (List<MsgFrame> Seen, Channel<MsgFrame> Arrivals, Task Pump) Collect(SwitchboardClient client, CancellationToken stop) => AppView.Collect(client, stop);

    private static Task WaitForAsync(Channel<MsgFrame> arrivals, Func<MsgFrame, bool> done) => AppView.WaitForAsync(arrivals, done);
}
