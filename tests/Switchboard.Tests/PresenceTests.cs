using System.Net;
using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Presence and replay behaviour that needs its own server settings.</summary>
public sealed class PresenceTests
{
    private static async Task<double> OpenSocketsAsync(TestServer server)
    {
        var text = await server.Http.GetStringAsync("/metrics");
        var line = text.Split('\n').First(l => l.StartsWith("switchboard_gateway_sockets ", StringComparison.Ordinal));
        return double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_client_that_vanishes_goes_offline_by_TTL_before_its_socket_is_closed()
    {
        // Heartbeat 4 s: presence lasts 8 s, the silent socket is closed after 12 s.
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:HeartbeatSeconds"] = "4" });
        var alice = await server.NewClientAsync();
        var bobUser = await server.RegisterAsync();
        await alice.SendAckedAsync(Conv.Direct(alice.User, bobUser), "hi");
        await alice.SendAsync(new { t = "watch", users = new[] { bobUser } });
        Assert.False((await alice.ExpectAsync("presence")).GetProperty("online").GetBoolean());

        // Alice keeps pinging; Bob says hello and then nothing, with his TCP connection left open.
        using var stop = new CancellationTokenSource();
        var pinger = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await alice.SendAsync(new { t = "ping" });
                await Task.Delay(1000);
            }
        });
        var bob = await server.NewDeviceAsync(bobUser);
        Assert.True((await alice.ExpectAsync("presence", timeout: TimeSpan.FromSeconds(30))).GetProperty("online").GetBoolean());
        var offline = await alice.ExpectAsync("presence", timeout: TimeSpan.FromSeconds(30));
        Assert.False(offline.GetProperty("online").GetBoolean());
        Assert.True(offline.GetProperty("last_seen").GetInt64() > 0);
        Assert.False(bob.Closed.IsCompleted);
        Assert.Equal(2, await OpenSocketsAsync(server)); // offline by TTL alone: Bob's socket is still open

        var (_, pulled) = await server.GetAsync($"/v1/presence/{bobUser}", alice.Token);
        Assert.False(pulled.GetProperty("online").GetBoolean());

        // Traffic brings him back.
        await bob.SendAsync(new { t = "ping" });
        Assert.True((await alice.ExpectAsync("presence", timeout: TimeSpan.FromSeconds(30))).GetProperty("online").GetBoolean());
        stop.Cancel();
        await pinger;
    }

    [Fact]
    public async Task A_killed_socket_makes_its_user_offline()
    {
        await using var server = await TestServer.StartAsync();
        var alice = await server.NewClientAsync();
        var bob = await server.NewClientAsync();
        await alice.SendAckedAsync(Conv.Direct(alice.User, bob.User), "hi");
        await alice.SendAsync(new { t = "watch", users = new[] { bob.User } });
        Assert.True((await alice.ExpectAsync("presence")).GetProperty("online").GetBoolean());
        bob.Kill();
        var offline = await alice.ExpectAsync("presence");
        Assert.False(offline.GetProperty("online").GetBoolean());
    }

    [Fact]
    public async Task Sync_of_a_large_backlog_streams_within_the_socket_budget()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:OutboundQueueBytes"] = "65536" });
        var alice = await server.NewClientAsync();
        var bob = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        var body = new string('s', 15_000);
        for (var i = 0; i < 100; i++)
        {
            await alice.SendAckedAsync(conv, body); // 1.5 MB in all, 23 times the socket's budget
        }

        await alice.SendAsync(new { t = "sync", conv, after = 0 });
        var seqs = new List<long>();
        while (true)
        {
            var frame = await alice.NextAsync();
            if (frame.GetProperty("t").GetString() == "synced")
            {
                Assert.False(frame.GetProperty("more").GetBoolean());
                break;
            }

            if (frame.GetProperty("t").GetString() == "msg")
            {
                seqs.Add(frame.GetProperty("seq").GetInt64());
            }
        }

        Assert.Equal(Enumerable.Range(1, 100).Select(i => (long)i), seqs);
        Assert.False(alice.Closed.IsCompleted);
    }

    [Fact]
    public async Task Events_that_arrive_during_replay_keep_their_order()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:ReplayPageSize"] = "16" });
        var alice = await server.NewClientAsync();
        var bobUser = await server.RegisterAsync();
        var (bobDevice, bobToken) = await server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        for (var i = 0; i < 300; i++)
        {
            await alice.SendTextAsync(conv, $"early {i}");
        }

        for (var i = 0; i < 300; i++)
        {
            await alice.ExpectAsync("ack");
        }

        // Bob reconnects while Alice keeps sending.
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < 200; i++)
            {
                await alice.SendTextAsync(conv, $"late {i}");
            }
        });
        var bob = await TestClient.ConnectAsync(server, bobUser, bobDevice, bobToken);
        await sending;
        var seqs = new List<long>();
        while (seqs.Count == 0 || seqs[^1] < 500)
        {
            var frame = await bob.NextAsync();
            if (frame.GetProperty("t").GetString() == "msg")
            {
                seqs.Add(frame.GetProperty("seq").GetInt64());
            }
        }

        Assert.Equal(Enumerable.Range(1, 500).Select(i => (long)i), seqs);
    }

    [Fact]
    public async Task A_socket_at_its_in_flight_limit_is_slowed_not_failed()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:MaxInFlightPerSocket"] = "2" });
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        for (var i = 0; i < 300; i++)
        {
            await alice.SendTextAsync(conv, $"m{i}");
        }

        for (var i = 1; i <= 300; i++)
        {
            Assert.Equal(i, (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64());
        }
    }
}
