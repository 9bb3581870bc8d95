using System.Net;
using System.Text.Json;

namespace Switchboard.Tests;

public sealed class GatewayTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TestServer Server => fixture.Server;

    [Fact]
    public async Task A_first_frame_that_is_not_hello_gets_an_error_then_1008()
    {
        var client = await TestClient.OpenAsync(Server);
        await client.SendAsync(new { t = "ping" });
        var error = await client.ExpectAsync("error");
        Assert.Equal("bad_frame", error.GetProperty("code").GetString());
        Assert.Equal(1008, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task A_wrong_version_gets_an_error_then_1008()
    {
        var user = await Server.RegisterAsync();
        var (_, token) = await Server.LinkAsync(user);
        var client = await TestClient.OpenAsync(Server);
        await client.SendAsync(new { t = "hello", v = 2, token });
        await client.ExpectAsync("error");
        Assert.Equal(1008, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task A_bad_token_is_unauthorized_then_1008()
    {
        var client = await TestClient.OpenAsync(Server);
        await client.SendAsync(new { t = "hello", v = 1, token = "not-a-token" });
        Assert.Equal("unauthorized", (await client.ExpectAsync("error")).GetProperty("code").GetString());
        Assert.Equal(1008, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task A_second_socket_of_the_same_device_replaces_the_first_with_4001()
    {
        var user = await Server.RegisterAsync();
        var (device, token) = await Server.LinkAsync(user);
        var first = await TestClient.ConnectAsync(Server, user, device, token);
        await first.ExpectAsync("live");
        var second = await TestClient.ConnectAsync(Server, user, device, token);
        await second.ExpectAsync("live");
        Assert.Equal(4001, await first.WaitClosedAsync());

        // The new socket is the one that receives.
        var alice = await Server.NewClientAsync();
        await alice.SendAckedAsync(Conv.Direct(alice.User, user), "to the new socket");
        await second.ExpectAsync("msg");
    }

    [Fact]
    public async Task Unlinking_a_device_revokes_its_token_and_closes_its_socket_with_1008()
    {
        var client = await Server.NewClientAsync();
        var other = await Server.NewDeviceAsync(client.User);
        var (_, devices) = await Server.GetAsync("/v1/devices", client.Token);
        Assert.Equal(2, devices.GetArrayLength());
        Assert.True(devices.EnumerateArray().Single(d => d.GetProperty("device").GetInt32() == client.Device).GetProperty("current").GetBoolean());

        using var response = await Server.Http.SendAsync(Server.Request(HttpMethod.Delete, $"/v1/devices/{other.Device}", client.Token));
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        Assert.Equal(1008, await other.WaitClosedAsync());

        var (status, _) = await Server.GetAsync("/v1/devices", other.Token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        using var again = await Server.Http.SendAsync(Server.Request(HttpMethod.Delete, $"/v1/devices/{other.Device}", client.Token));
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
    }

    [Fact]
    public async Task Metrics_are_served_in_prometheus_text()
    {
        var alice = await Server.NewClientAsync();
        await alice.SendAckedAsync(Conv.Direct(alice.User, await Server.RegisterAsync()), "count me");
        var names = new[] { "switchboard_gateway_sockets", "switchboard_messaging_accepted_total", "switchboard_storage_batch_size_bucket", "switchboard_storage_persist_seconds_bucket", "switchboard_messaging_delivery_seconds_bucket" };
        var text = "";
        // The exporter publishes meter measurements in the background: poll until they show up.
        for (var attempt = 0; attempt < 50 && !names.All(n => text.Contains(n, StringComparison.Ordinal)); attempt++)
        {
            await Task.Delay(200);
            text = await Server.Http.GetStringAsync("/metrics");
        }

        foreach (var name in new[] { "switchboard_gateway_sockets", "switchboard_messaging_accepted_total", "switchboard_storage_batch_size_bucket", "switchboard_storage_persist_seconds_bucket", "switchboard_messaging_delivery_seconds_bucket" })
        {
            Assert.True(text.Contains(name, StringComparison.Ordinal), $"{name} missing from:\n{string.Join('\n', text.Split('\n').Where(l => l.StartsWith("switchboard", StringComparison.Ordinal)))}");
        }

        Assert.Equal("ok", await Server.Http.GetStringAsync("/healthz"));
        Assert.Equal("ready", await Server.Http.GetStringAsync("/readyz"));
    }

    [Fact]
    public async Task Typing_reaches_the_other_party_only_and_is_throttled_and_never_replayed()
    {
        var alice = await Server.NewClientAsync();
        var alice2 = await Server.NewDeviceAsync(alice.User);
        var bobUser = await Server.RegisterAsync();
        var (bobDevice, bobToken) = await Server.LinkAsync(bobUser);
        var bob = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        await bob.ExpectAsync("live");
        var conv = Conv.Direct(alice.User, bobUser);

        await alice.SendAsync(new { t = "typing", conv, on = true });
        await alice.SendAsync(new { t = "typing", conv, on = true }); // within a second: dropped
        var typing = await bob.ExpectAsync("typing");
        Assert.Equal(alice.User, typing.GetProperty("user").GetString());
        Assert.True(typing.GetProperty("on").GetBoolean());
        Assert.DoesNotContain(await bob.DrainAsync(), f => f.GetProperty("t").GetString() == "typing");
        Assert.DoesNotContain(await alice2.DrainAsync(), f => f.GetProperty("t").GetString() == "typing");

        await bob.CloseAsync();
        await alice.SendAsync(new { t = "typing", conv, on = false });
        await Task.Delay(100);
        var back = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        var frames = await back.DrainAsync();
        Assert.Contains(frames, f => f.GetProperty("t").GetString() == "live");
        Assert.DoesNotContain(frames, f => f.GetProperty("t").GetString() == "typing");
    }

    [Fact]
    public async Task Watch_gives_presence_then_deltas_only_for_users_you_share_a_conversation_with()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var stranger = await Server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bobUser);
        await alice.SendAckedAsync(conv, "hi"); // now they share a conversation

        await alice.SendAsync(new { t = "watch", users = new[] { bobUser, stranger } });
        var refused = await alice.ExpectAsync("error");
        Assert.Equal("forbidden", refused.GetProperty("code").GetString());
        Assert.Equal(stranger, refused.GetProperty("ref").GetString());
        var offline = await alice.ExpectAsync("presence");
        Assert.Equal(bobUser, offline.GetProperty("user").GetString());
        Assert.False(offline.GetProperty("online").GetBoolean());

        var bob = await Server.NewDeviceAsync(bobUser);
        var online = await alice.ExpectAsync("presence");
        Assert.True(online.GetProperty("online").GetBoolean());
        Assert.Equal(JsonValueKind.Null, online.GetProperty("last_seen").ValueKind);

        await bob.CloseAsync();
        var gone = await alice.ExpectAsync("presence");
        Assert.False(gone.GetProperty("online").GetBoolean());
        Assert.True(gone.GetProperty("last_seen").GetInt64() > 0);

        var (status, pulled) = await Server.GetAsync($"/v1/presence/{bobUser}", alice.Token);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.False(pulled.GetProperty("online").GetBoolean());
        Assert.Equal(HttpStatusCode.Forbidden, (await Server.GetAsync($"/v1/presence/{stranger}", alice.Token)).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Server.GetAsync("/v1/presence/no-such-user-here", alice.Token)).Status);
    }
}

/// <summary>Timing-driven closes, each on a server with short settings (asserting codes, never durations).</summary>
public sealed class GatewayTimeoutTests
{
    [Fact]
    public async Task A_stopping_server_closes_sockets_with_4003_after_committing_what_it_acked()
    {
        var server = await TestServer.StartAsync();
        try
        {
            var alice = await server.NewClientAsync();
            var conv = Conv.Direct(alice.User, await server.RegisterAsync());
            var ack = await alice.SendAckedAsync(conv, "before the restart");
            var dataDir = server.DataDir;
            var stopping = server.StopAsync();
            Assert.Equal(4003, await alice.WaitClosedAsync());
            await stopping;

            // The acked message is there after a restart on the same data.
            await using var again = await TestServer.StartAsync(dataDir: dataDir);
            var (_, token) = await again.LinkAsync(alice.User);
            var (_, history) = await again.GetAsync($"/v1/conversations/{conv}/messages", token);
            Assert.Equal(ack.GetProperty("id").GetString(), Assert.Single(history.GetProperty("messages").EnumerateArray()).GetProperty("id").GetString());
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task No_hello_in_time_closes_with_1008()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:HelloTimeoutSeconds"] = "1" });
        var client = await TestClient.OpenAsync(server);
        Assert.Equal(1008, await client.WaitClosedAsync());
    }

    [Fact]
    public async Task A_silent_socket_is_closed_with_1001_while_a_pinging_one_stays()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:HeartbeatSeconds"] = "1" });
        var silent = await server.NewClientAsync();
        var chatty = await server.NewClientAsync();
        using var stop = new CancellationTokenSource();
        var pinger = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await chatty.SendAsync(new { t = "ping" });
                await Task.Delay(300);
            }
        });
        Assert.Equal(1001, await silent.WaitClosedAsync());
        Assert.False(chatty.Closed.IsCompleted);
        stop.Cancel();
        await pinger;
    }

    [Fact]
    public async Task A_client_that_does_not_read_is_closed_with_4002_and_recovers_everything_on_reconnect()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Gateway:OutboundQueueBytes"] = "65536",
            ["Switchboard:Messaging:DeviceBurst"] = "100000",
            ["Switchboard:Messaging:UserBurst"] = "100000",
        });
        var alice = await server.NewClientAsync();
        var bobUser = await server.RegisterAsync();
        var (bobDevice, bobToken) = await server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);

        // A raw socket that says hello and then never reads.
        using var raw = new System.Net.WebSockets.ClientWebSocket();
        raw.Options.KeepAliveInterval = TimeSpan.Zero;
        await raw.ConnectAsync(server.WebSocketUri, CancellationToken.None);
        await raw.SendAsync(System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { t = "hello", v = 1, token = bobToken })), System.Net.WebSockets.WebSocketMessageType.Text, true, CancellationToken.None);

        var body = new string('x', 15_000);
        var sent = 0;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        // Enough to fill kernel buffers and the 64 KiB queue; stop as soon as the server gives up on the reader.
        while (sent < 2000 && DateTime.UtcNow < deadline)
        {
            for (var i = 0; i < 50; i++, sent++)
            {
                await alice.SendTextAsync(conv, body);
            }

            for (var i = 0; i < 50; i++)
            {
                await alice.ExpectAsync("ack");
            }

            var metrics = await server.Http.GetStringAsync("/metrics");
            if (metrics.Contains("switchboard_gateway_slow_closed_total 1") || metrics.Contains("switchboard_gateway_slow_closed 1"))
            {
                break;
            }
        }

        // Now read: somewhere after the frames already in flight comes the 4002 close.
        var buffer = new byte[1 << 20];
        while (true)
        {
            var result = await raw.ReceiveAsync(buffer, new CancellationTokenSource(TimeSpan.FromSeconds(15)).Token);
            if (result.MessageType == System.Net.WebSockets.WebSocketMessageType.Close)
            {
                break;
            }
        }

        Assert.Equal(4002, (int?)raw.CloseStatus);

        // Nothing is lost: a reconnect replays all of it.
        var bob = await TestClient.ConnectAsync(server, bobUser, bobDevice, bobToken);
        var seqs = TestClient.Messages(await bob.UntilLiveAsync()).Select(m => m.GetProperty("seq").GetInt64()).ToHashSet();

        Assert.Equal(sent, seqs.Count);
    }
}

public sealed class AccountTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TestServer Server => fixture.Server;

    private async Task<(HttpStatusCode, string?)> PostAsync(string path, object body)
    {
        using var response = await Server.Http.PostAsync(path, System.Net.Http.Json.JsonContent.Create(body));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length > 0 && text.StartsWith('{') ? JsonDocument.Parse(text).RootElement.TryGetProperty("error", out var e) ? e.GetString() : null : null);
    }

    [Fact]
    public async Task Register_validates_handles_and_passwords_and_refuses_taken_names()
    {
        var user = TestServer.NewUser();
        Assert.Equal((HttpStatusCode.Created, null), await PostAsync("/v1/accounts", new { user, password = "12345678" }));
        Assert.Equal((HttpStatusCode.Conflict, "conflict"), await PostAsync("/v1/accounts", new { user, password = "12345678" }));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid"), await PostAsync("/v1/accounts", new { user = "Upper", password = "12345678" }));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid"), await PostAsync("/v1/accounts", new { user = "ab", password = "12345678" }));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid"), await PostAsync("/v1/accounts", new { user = "_abc", password = "12345678" }));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid"), await PostAsync("/v1/accounts", new { user = TestServer.NewUser(), password = "1234567" }));
    }

    [Fact]
    public async Task Linking_with_a_wrong_password_or_unknown_user_is_the_same_401()
    {
        var user = await Server.RegisterAsync();
        Assert.Equal((HttpStatusCode.Unauthorized, "unauthorized"), await PostAsync("/v1/devices", new { user, password = "wrong password", name = "x" }));
        Assert.Equal((HttpStatusCode.Unauthorized, "unauthorized"), await PostAsync("/v1/devices", new { user = "nobody-" + Guid.NewGuid().ToString("N")[..6], password = "whatever1", name = "x" }));
        var (first, token1) = await Server.LinkAsync(user);
        var (second, token2) = await Server.LinkAsync(user);
        Assert.Equal(first + 1, second);
        Assert.NotEqual(token1, token2);
    }

    [Fact]
    public async Task Passwords_are_stored_as_argon2id_hashes_with_the_default_cost()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Accounts:Argon2MemoryKiB"] = "19456",
            ["Switchboard:Accounts:Argon2Passes"] = "2",
        });
        var user = await server.RegisterAsync(password: "a long passphrase");
        var (_, token) = await server.LinkAsync(user, "a long passphrase");
        Assert.False(string.IsNullOrEmpty(token));

        var accounts = server.Services.GetRequiredService<Switchboard.Server.Accounts.IAccountStore>();
        var stored = await accounts.GetUserAsync(user);
        Assert.NotNull(stored);
        Assert.Equal(32, stored.Hash.Length);
        Assert.Equal(16, stored.Salt.Length);
        Assert.Equal("argon2id;m=19456;t=2", stored.Parameters);
        var device = Assert.Single(await accounts.GetDevicesAsync(user));
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(token)), device.TokenHash);

        // Neither the password nor the token is anywhere on disk: not in the log, not in a table file.
        await server.StopAsync();
        foreach (var file in Directory.EnumerateFiles(server.DataDir, "*", SearchOption.AllDirectories))
        {
            var bytes = await File.ReadAllBytesAsync(file);
            Assert.Equal(-1, bytes.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes("a long passphrase")));
            Assert.Equal(-1, bytes.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(token)));
        }
    }

    [Fact]
    public async Task Changing_the_hash_cost_keeps_existing_passwords_working()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-test-" + Guid.NewGuid().ToString("N"));
        await using var first = await TestServer.StartAsync(dataDir: dataDir);
        var user = await first.RegisterAsync();
        await first.StopAsync();
        await using var costlier = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Accounts:Argon2MemoryKiB"] = "128", ["Switchboard:Accounts:Argon2Passes"] = "2" }, dataDir);
        var (_, token) = await costlier.LinkAsync(user);
        Assert.False(string.IsNullOrEmpty(token));
        using var wrong = await costlier.Http.PostAsync("/v1/devices", System.Net.Http.Json.JsonContent.Create(new { user, password = "not the password", name = "x" }));
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
    }
}
