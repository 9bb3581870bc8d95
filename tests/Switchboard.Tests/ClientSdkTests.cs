using System.Threading.Channels;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Tests;

/// <summary>The SDK against the real server, through a fault-injecting proxy where the network matters.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class ClientSdkTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private static readonly SwitchboardClientOptions Fast = new()
    {
        ReconnectBaseDelay = TimeSpan.FromMilliseconds(20),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(200),
    };

    private static (List<MsgFrame> Seen, Channel<MsgFrame> Arrivals, Task Pump) Collect(SwitchboardClient client, CancellationToken stop) => AppView.Collect(client, stop);

    private static Task WaitForAsync(Channel<MsgFrame> arrivals, Func<MsgFrame, bool> done) => AppView.WaitForAsync(arrivals, done);

    [Fact]
    public async Task A_socket_cut_mid_stream_loses_and_duplicates_nothing_the_app_sees()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (_, bobToken) = await Server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        await using var proxy = new FaultProxy(Server.Address);
        await using var bob = new SwitchboardClient(proxy.Url, bobToken, Fast);
        using var stop = new CancellationTokenSource();
        var (seen, arrivals, pump) = Collect(bob, stop.Token);
        await bob.ConnectAsync();

        const int count = 300;
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < count; i++)
            {
                await alice.SendTextAsync(conv, $"m{i} " + new string('x', 200));
                if (i % 20 == 0)
                {
                    await Task.Delay(5);
                }
            }
        });
        var cutting = Task.Run(async () =>
        {
            for (var i = 0; i < 6; i++)
            {
                await Task.Delay(60);
                proxy.CutAll(); // wherever the bytes are: often mid-frame
            }
        });
        await Task.WhenAll(sending, cutting);
        await WaitForAsync(arrivals, m => m.Seq == count);
        await Task.Delay(200); // anything duplicated would show up now

        lock (seen)
        {
            Assert.Equal(Enumerable.Range(1, count).Select(i => (long)i), seen.Select(m => m.Seq));
        }

        Assert.True(proxy.Accepted > 1, "the proxy should have seen reconnects");
        stop.Cancel();
        await pump;
    }

    [Fact]
    public async Task A_send_during_an_outage_is_delivered_once_after_reconnect()
    {
        var aliceUser = await Server.RegisterAsync();
        var (_, aliceToken) = await Server.LinkAsync(aliceUser);
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(aliceUser, bob.User);
        await using var proxy = new FaultProxy(Server.Address);
        await using var alice = new SwitchboardClient(proxy.Url, aliceToken, Fast);
        await alice.ConnectAsync();

        proxy.Refusing = true;
        proxy.CutAll();
        var send = alice.SendTextAsync(conv, "sent while offline");
        await Task.Delay(300);
        // A frame already past the proxy when it cut may still be acked; a send must never fail or be cancelled.
        Assert.False(send.IsFaulted || send.IsCanceled, $"status {send.Status} {send.Exception?.InnerException?.Message}");

        proxy.Refusing = false;
        var ack = await send.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, ack.Seq);
        var msg = await bob.ExpectAsync("msg");
        Assert.Equal("sent while offline", msg.GetProperty("body").GetString());
        Assert.DoesNotContain(await bob.DrainAsync(), f => f.GetProperty("t").GetString() == "msg");
        var history = await alice.GetHistoryAsync(conv);
        Assert.Single(history.Messages);
    }

    [Fact]
    public async Task A_silently_dead_connection_is_noticed_and_replaced()
    {
        // Heartbeat 1 s: the client pings every half second and gives up on a path silent for two heartbeats.
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:HeartbeatSeconds"] = "1" });
        var aliceUser = await server.RegisterAsync();
        var (_, aliceToken) = await server.LinkAsync(aliceUser);
        var bob = await server.RegisterAsync();
        await using var proxy = new FaultProxy(server.Address);
        await using var alice = new SwitchboardClient(proxy.Url, aliceToken, Fast);
        await alice.ConnectAsync();

        proxy.SilenceAll(); // TCP stays up, nothing gets through, nobody is told
        var conv = Conv.Direct(aliceUser, bob);
        var ack = await alice.SendTextAsync(conv, "through a new connection").WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, ack.Seq);
        Assert.True(proxy.Accepted >= 2);
        var history = await alice.GetHistoryAsync(conv);
        Assert.Equal("through a new connection", Assert.Single(history.Messages).Body);
    }

    [Fact]
    public async Task Your_own_sends_are_not_handed_back_as_messages_when_the_other_side_answers()
    {
        var bob = await Server.NewClientAsync();
        var aliceUser = await Server.RegisterAsync();
        var (_, aliceToken) = await Server.LinkAsync(aliceUser);
        var conv = Conv.Direct(aliceUser, bob.User);
        await using var alice = new SwitchboardClient(Server.Address, aliceToken, Fast);
        using var stop = new CancellationTokenSource();
        var (seen, arrivals, pump) = Collect(alice, stop.Token);
        await alice.ConnectAsync();

        await bob.SendAckedAsync(conv, "from bob, #1");
        await WaitForAsync(arrivals, m => m.Seq == 1);
        Assert.Equal(2, (await alice.SendTextAsync(conv, "from alice, #2")).Seq);
        Assert.Equal(3, (await alice.SendTextAsync(conv, "from alice, #3")).Seq);
        await bob.SendAckedAsync(conv, "from bob, #4");
        // Had #4 been taken for one past a gap, a sync would have brought #2 and #3 back before it.
        await WaitForAsync(arrivals, m => m.Seq == 4);
        lock (seen)
        {
            Assert.Equal(["from bob, #1", "from bob, #4"], seen.Select(m => m.Body));
        }

        stop.Cancel();
        await pump;
    }

    [Fact]
    public async Task A_gap_is_repaired_with_sync()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (bobDevice, bobToken) = await Server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        for (var i = 1; i <= 5; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        // The device told the server it holds up to 4 …
        var raw = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        await raw.ExpectAsync("live");
        await raw.SendAsync(new { t = "recv", conv, seq = 4 });
        await raw.SendAsync(new { t = "ping" });
        await raw.ExpectAsync("pong");
        await raw.CloseAsync();

        // … but its local state only knows up to 2: the server's replay starts at 5, a gap the client must repair.
        var state = new InMemoryClientStateStore();
        await state.SetLastSeqAsync(conv, 2);
        await using var bob = new SwitchboardClient(Server.Address, bobToken, Fast with { State = state });
        using var stop = new CancellationTokenSource();
        var (seen, arrivals, pump) = Collect(bob, stop.Token);
        await bob.ConnectAsync();
        await WaitForAsync(arrivals, m => m.Seq == 5);
        lock (seen)
        {
            Assert.Equal([3L, 4L, 5L], seen.Select(m => m.Seq));
        }

        stop.Cancel();
        await pump;
    }

    [Fact]
    public async Task A_restarted_client_resends_its_persisted_outbox_once()
    {
        var aliceUser = await Server.RegisterAsync();
        var (_, aliceToken) = await Server.LinkAsync(aliceUser);
        var bob = await Server.RegisterAsync();
        var conv = Conv.Direct(aliceUser, bob);
        var path = Path.Combine(Path.GetTempPath(), $"switchboard-client-{Guid.NewGuid():N}.db");
        try
        {
            await using (var proxy = new FaultProxy(Server.Address))
            {
                using var state = new SqliteClientStateStore(path);
                await using var alice = new SwitchboardClient(proxy.Url, aliceToken, Fast with { State = state });
                await alice.ConnectAsync();
                proxy.Refusing = true;
                proxy.CutAll();
                _ = alice.SendTextAsync(conv, "survives a restart");
                await Task.Delay(200);
            }

            using var reopened = new SqliteClientStateStore(path);
            Assert.Single(await reopened.LoadOutboxAsync());
            await using var again = new SwitchboardClient(Server.Address, aliceToken, Fast with { State = reopened });
            await again.ConnectAsync();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((await reopened.LoadOutboxAsync()).Count > 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }

            Assert.Empty(await reopened.LoadOutboxAsync());
            var history = await again.GetHistoryAsync(conv);
            Assert.Equal("survives a restart", Assert.Single(history.Messages).Body);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            File.Delete(path);
        }
    }

    [Fact]
    public async Task A_refused_token_stops_the_client_instead_of_retrying()
    {
        await using var client = new SwitchboardClient(Server.Address, "not-a-token", Fast);
        var error = await Assert.ThrowsAsync<SwitchboardException>(() => client.ConnectAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("unauthorized", error.Code);
        Assert.Equal(ConnectionState.Stopped, client.State);
    }

    [Fact]
    public async Task A_refused_send_fails_with_its_code_and_leaves_the_outbox()
    {
        var user = await Server.RegisterAsync();
        var device = await SwitchboardClient.LinkDeviceAsync(Server.Address, user, "correct horse", "sdk");
        await using var client = new SwitchboardClient(Server.Address, device.Token, Fast);
        await client.ConnectAsync();
        var error = await Assert.ThrowsAsync<SwitchboardException>(() => client.SendTextAsync(Conv.Direct(user, "nobody-" + Guid.NewGuid().ToString("N")[..6]), "hello?"));
        Assert.Equal("not_found", error.Code);

        var group = await client.CreateGroupAsync("sdk group", []);
        Assert.Equal(user, Assert.Single(group.Members).User);
        var ack = await client.SendTextAsync(group.Conv, "in my group");
        Assert.Equal(2, ack.Seq);
        var http = await Assert.ThrowsAsync<SwitchboardException>(() => client.GetGroupAsync("grp:0"));
        Assert.Equal(404, http.Status);
    }

    [Fact]
    public void Backoff_is_jittered_and_bounded()
    {
        var random = new Random(42);
        var baseDelay = TimeSpan.FromMilliseconds(100);
        var max = TimeSpan.FromSeconds(5);
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var ceiling = Math.Min(max.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, attempt));
            var samples = Enumerable.Range(0, 200).Select(_ => Backoff.Delay(attempt, baseDelay, max, random).TotalMilliseconds).ToList();
            Assert.All(samples, s => Assert.InRange(s, 0, ceiling));
            Assert.True(samples.Distinct().Count() > 150, "delays must be spread, not fixed");
            Assert.True(samples.Max() > ceiling * 0.8 && samples.Min() < ceiling * 0.2, "full jitter covers the whole range");
        }
    }
}

[Collection(AloneCollection.Name)]
public sealed class ClientSdkTestsEmbedded(ServerFixture fixture) : ClientSdkTests(fixture), IClassFixture<ServerFixture>;

[Collection(AloneCollection.Name)]
public sealed class ClientSdkTestsCluster(Cluster.ClusterNodeFixture fixture) : ClientSdkTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;

/// <summary>
/// Tests that time what a client notices (a silent socket, a cut mid-stream, a reconnect's backoff) run apart from the
/// others, after them: on two shared cores, a cluster test beside them can hold their threads past the timings they check.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "alone";
}
