using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Every error code of the protocol, answered as specified, with nothing stored and the socket kept.</summary>
public sealed class BadInputTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TestServer Server => fixture.Server;

    private static async Task<JsonElement> ErrorAsync(TestClient client, string code)
    {
        var error = await client.ExpectAsync("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        return error;
    }

    private static async Task StillAliveAsync(TestClient client)
    {
        await client.SendAsync(new { t = "ping" });
        await client.ExpectAsync("pong");
    }

    private async Task AssertNothingStoredAsync(TestClient client, string conv)
    {
        var (status, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", client.Token);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(history.GetProperty("messages").EnumerateArray());
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json at all")]
    [InlineData("{\"t\":")]
    [InlineData("[1,2,3]")]
    [InlineData("{\"t\":\"teleport\"}")]
    [InlineData("{\"no_t\":1}")]
    [InlineData("{\"t\":\"send\",\"cid\":5,\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":\"x\"}")]
    [InlineData("{\"t\":\"send\",\"cid\":\"c1\",\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":7}")]
    [InlineData("{\"t\":\"recv\",\"conv\":\"dm:a:b\",\"seq\":\"three\"}")]
    [InlineData("{\"t\":\"typing\",\"conv\":\"dm:a:b\",\"on\":\"yes\"}")]
    [InlineData("{\"t\":\"hello\",\"v\":1,\"token\":\"again\"}")]
    public async Task Malformed_frames_are_bad_frame_and_the_socket_stays(string raw)
    {
        var client = await Server.NewClientAsync();
        await client.SendRawAsync(raw);
        await ErrorAsync(client, "bad_frame");
        await StillAliveAsync(client);
    }

    [Theory]
    [InlineData("{\"t\":\"send\",\"cid\":\"\\udc00\",\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":\"x\"}")]
    [InlineData("{\"t\":\"send\",\"cid\":\"c\",\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":\"\\ud800 lone\"}")]
    [InlineData("{\"t\":\"ping\",\"t\":\"hello\",\"v\":1,\"token\":\"x\"}")]
    [InlineData("{\"t\":\"recv\",\"conv\":\"dm:a:b\",\"seq\":1,\"seq\":2}")]
    [InlineData("{\"t\":\"recv\",\"conv\":\"dm:a:b\",\"seq\":\"three\"}")]
    [InlineData("{\"t\":\"recv\",\"conv\":\"dm:a:b\",\"seq\":1e400}")]
    [InlineData("{\"t\":\"send\",\"cid\":\"c\",\"conv\":[],\"kind\":\"text\",\"body\":\"x\"}")]
    public async Task Bad_strings_duplicate_keys_and_wrong_types_are_bad_frame_in_plain_words(string raw)
    {
        var client = await Server.NewClientAsync();
        await client.SendRawAsync(raw);
        var error = await ErrorAsync(client, "bad_frame");
        var message = error.GetProperty("message").GetString()!;
        Assert.DoesNotContain("System.", message);
        Assert.DoesNotContain("`", message);
        Assert.DoesNotContain("Nullable", message);
        await StillAliveAsync(client);
    }

    [Fact]
    public async Task A_send_with_an_ill_typed_field_names_its_cid_in_the_error()
    {
        var client = await Server.NewClientAsync();
        await client.SendRawAsync("{\"t\":\"send\",\"cid\":\"typed-1\",\"conv\":\"dm:a:b\",\"kind\":\"text\",\"body\":\"x\",\"reply_to\":\"one\"}");
        var error = await ErrorAsync(client, "bad_frame");
        Assert.Equal("typed-1", error.GetProperty("ref").GetString());
    }

    [Fact]
    public async Task Send_shape_errors_are_bad_frame_with_the_cid_and_store_nothing()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bob);
        var cases = new object[]
        {
            new { t = "send", cid = "k1", conv, kind = "edit", body = "x" },
            new { t = "send", cid = "k2", conv, kind = "system", body = "x" },
            new { t = "send", cid = "k3", conv, kind = "sticker", body = "x" },
            new { t = "send", cid = "k4", conv, kind = "text" },
            new { t = "send", cid = "k5", conv, kind = "text", body = "x", e2ee = new { d = "y" } },
            new { t = "send", cid = "k6", conv, kind = "text", e2ee = "not an object" },
            new { t = "send", cid = "k7", kind = "text", body = "x" },
            new { t = "send", cid = new string('c', 65), conv, kind = "text", body = "x" },
        };
        foreach (var frame in cases)
        {
            await alice.SendAsync(frame);
            await ErrorAsync(alice, "bad_frame");
        }

        await StillAliveAsync(alice);
        await AssertNothingStoredAsync(alice, conv);
    }

    [Fact]
    public async Task Oversized_body_is_too_large_and_stored_nowhere()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bob);
        var cid = Guid.NewGuid().ToString();
        // 16 KiB counts UTF-8 bytes: 6,000 three-byte characters are 18,000 bytes.
        await alice.SendAsync(new { t = "send", cid, conv, kind = "text", body = new string('€', 6000) });
        var error = await ErrorAsync(alice, "too_large");
        Assert.Equal(cid, error.GetProperty("ref").GetString());
        await AssertNothingStoredAsync(alice, conv);

        // Exactly at the limit is fine.
        var ack = await alice.SendAckedAsync(conv, new string('a', 16 * 1024));
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task A_duplicate_is_answered_before_size_is_checked()
    {
        var alice = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await Server.RegisterAsync());
        var cid = Guid.NewGuid().ToString();
        var first = await alice.SendAckedAsync(conv, "small", cid);
        await alice.SendAsync(new { t = "send", cid, conv, kind = "text", body = new string('x', 20_000) });
        var dup = await alice.ExpectAsync("ack");
        Assert.True(dup.GetProperty("dup").GetBoolean());
        Assert.Equal(first.GetProperty("id").GetString(), dup.GetProperty("id").GetString());
    }

    [Fact]
    public async Task Sending_where_you_are_not_a_member_is_forbidden_and_unknown_conversations_not_found()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.RegisterAsync();
        var carol = await Server.RegisterAsync();
        var theirs = Conv.Direct(bob, carol);

        var cid = await alice.SendTextAsync(theirs, "let me in");
        var error = await ErrorAsync(alice, "forbidden");
        Assert.Equal(cid, error.GetProperty("ref").GetString());

        var sorted = new[] { alice.User, bob }.Order(StringComparer.Ordinal).ToArray();
        foreach (var conv in new[]
                 {
                     $"dm:{sorted[1]}:{sorted[0]}",          // unsorted
                     $"dm:{alice.User}:{alice.User}",         // equal
                     Conv.Direct(alice.User, "nobody-" + Guid.NewGuid().ToString("N")[..8]), // unknown user
                     "grp:doesnotexist",
                     "chan:whatever",
                 })
        {
            await alice.SendTextAsync(conv, "hello?");
            await ErrorAsync(alice, "not_found");
        }

        // Nothing was stored in the conversation alice is not part of.
        var bobClient = await Server.NewDeviceAsync(bob);
        var (_, history) = await Server.GetAsync($"/v1/conversations/{theirs}/messages", bobClient.Token);
        Assert.Empty(history.GetProperty("messages").EnumerateArray());
        var (status, _) = await Server.GetAsync($"/v1/conversations/{theirs}/messages", alice.Token);
        Assert.Equal(HttpStatusCode.Forbidden, status);
    }

    [Fact]
    public async Task Cursors_and_sync_from_a_non_member_are_forbidden()
    {
        var alice = await Server.NewClientAsync();
        var theirs = Conv.Direct(await Server.RegisterAsync(), await Server.RegisterAsync());
        await alice.SendAsync(new { t = "recv", conv = theirs, seq = 1 });
        Assert.Equal(theirs, (await ErrorAsync(alice, "forbidden")).GetProperty("ref").GetString());
        await alice.SendAsync(new { t = "read", conv = theirs, seq = 1 });
        await ErrorAsync(alice, "forbidden");
        await alice.SendAsync(new { t = "sync", conv = theirs, after = 0 });
        await ErrorAsync(alice, "forbidden");
        await alice.SendAsync(new { t = "typing", conv = theirs, on = true });
        await ErrorAsync(alice, "forbidden");
    }

    [Fact]
    public async Task Reply_to_an_event_that_does_not_exist_is_not_found()
    {
        var alice = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await Server.RegisterAsync());
        await alice.SendAckedAsync(conv, "one");
        var cid = Guid.NewGuid().ToString();
        await alice.SendAsync(new { t = "send", cid, conv, kind = "text", body = "re", reply_to = 5 });
        await ErrorAsync(alice, "not_found");
        var ok = Guid.NewGuid().ToString();
        await alice.SendAsync(new { t = "send", cid = ok, conv, kind = "text", body = "re", reply_to = 1 });
        await alice.ExpectAsync("ack", f => f.GetProperty("cid").GetString() == ok);
        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.Equal(2, history.GetProperty("messages").GetArrayLength());
        Assert.Equal(1, history.GetProperty("messages")[0].GetProperty("reply_to").GetInt64());
    }

    [Fact]
    public async Task Binary_frames_are_refused_with_bad_frame()
    {
        var client = await Server.NewClientAsync();
        await client.SendBinaryAsync([1, 2, 3]);
        await ErrorAsync(client, "bad_frame");
        await StillAliveAsync(client);
    }

    [Fact]
    public async Task A_frame_over_the_limit_closes_with_1009_and_no_error_frame()
    {
        var client = await Server.NewClientAsync();
        await client.SendRawAsync("{\"t\":\"ping\",\"pad\":\"" + new string('x', 70 * 1024) + "\"}");
        Assert.Equal(1009, await client.WaitClosedAsync());
        var rest = await client.DrainAsync();
        Assert.DoesNotContain(rest, f => f.GetProperty("t").GetString() == "error");
    }

    [Fact]
    public async Task Http_bad_tokens_are_401_with_an_error_body()
    {
        foreach (var token in new[] { "", "nonsense", Convert.ToBase64String(new byte[32]) })
        {
            var (status, body) = await Server.GetAsync("/v1/conversations", token);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Equal("unauthorized", body.GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task Http_bodies_that_are_not_json_or_too_big_are_refused()
    {
        using var notJson = await Server.Http.PostAsync("/v1/accounts", new StringContent("{{{", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, notJson.StatusCode);
        Assert.Equal("invalid", (await notJson.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetString());

        using var wrongType = await Server.Http.PostAsync("/v1/accounts", new StringContent("{\"user\":5,\"password\":\"x\"}", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);

        var huge = "{\"user\":\"bigbody\",\"password\":\"" + new string('p', 200_000) + "\"}";
        using var tooBig = await Server.Http.PostAsync("/v1/accounts", new StringContent(huge, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooBig.StatusCode);
        Assert.Equal("too_large", (await tooBig.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetString());
    }

    [Fact]
    public async Task Receipts_without_seq_are_invalid()
    {
        var alice = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await Server.RegisterAsync());
        var (status, body) = await Server.GetAsync($"/v1/conversations/{conv}/receipts", alice.Token);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid", body.GetProperty("error").GetString());
    }
}

/// <summary>Errors that need their own server settings.</summary>
public sealed class LimitTests
{
    [Fact]
    public async Task Over_the_send_rate_is_rate_limited_with_retry_after_and_nothing_stored()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Messaging:DeviceBurst"] = "5",
            ["Switchboard:Messaging:DevicePerSecond"] = "1",
        });
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        for (var i = 0; i < 5; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        var cid = await alice.SendTextAsync(conv, "one too many");
        var error = await alice.ExpectAsync("error");
        Assert.Equal("rate_limited", error.GetProperty("code").GetString());
        Assert.Equal(cid, error.GetProperty("ref").GetString());
        Assert.True(error.GetProperty("retry_after").GetInt64() > 0);
        var (_, history) = await server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.Equal(5, history.GetProperty("messages").GetArrayLength());

        // A duplicate is not rate limited: it is answered before the rate check.
        var (_, first) = await server.GetAsync($"/v1/conversations/{conv}/messages?limit=1", alice.Token);
        var firstCid = first.GetProperty("messages")[0].GetProperty("cid").GetString()!;
        var dup = await alice.SendAckedAsync(conv, "again", firstCid);
        Assert.True(dup.GetProperty("dup").GetBoolean());
    }

    [Fact]
    public async Task A_full_disk_answers_unavailable_and_the_same_cid_later_lands_once()
    {
        // A real storage fault: the data dir on a small tmpfs, filled up while the server runs.
        await using var disk = await SmallDisk.MountAsync(megabytes: 48);
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Storage:WriteBufferMegabytes"] = "8" }, dataDir: disk.Path);
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        await alice.SendAckedAsync(conv, "before the disk filled");
        var filler = disk.Fill();

        // The log may have room set aside; sends go on until a batch cannot be written.
        var body = new string('x', 8 * 1024);
        string? refused = null;
        for (var i = 0; i < 4000 && refused is null; i++)
        {
            var cid = await alice.SendTextAsync(conv, body);
            var answer = await AnswerAsync(alice);
            if (answer.GetProperty("t").GetString() == "error")
            {
                Assert.Equal("unavailable", answer.GetProperty("code").GetString());
                Assert.Equal(cid, answer.GetProperty("ref").GetString());
                refused = cid;
            }
        }

        Assert.NotNull(refused);
        using (var notReady = await server.Http.GetAsync("/readyz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        }

        // The HTTP calls that write answer 503 unavailable with a body too, never an empty 500. (What the failed
        // batch left free is taken first, so the store has not one byte to write.)
        var rest = disk.Fill("rest");
        foreach (var (path, request) in new (string, object)[]
                 {
                     ("/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }),
                     ("/v1/devices", new { user = alice.User, password = "correct horse", name = "on a full disk" }),
                 })
        {
            using var response = await server.Http.PostAsJsonAsync(path, request);
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("unavailable", (await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("error").GetString());
        }

        // Room again: the client retries with the same cid, as the error code says, and it is stored once.
        File.Delete(rest);
        File.Delete(filler);
        var ack = await RetryUntilAckedAsync(alice, conv, body, refused);
        var again = await alice.SendAckedAsync(conv, body, refused);
        Assert.True(again.GetProperty("dup").GetBoolean());
        Assert.Equal(ack.GetProperty("seq").GetInt64(), again.GetProperty("seq").GetInt64());
        using (var ready = await server.Http.GetAsync("/readyz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, ready.StatusCode);
        }

        var store = server.Services.GetRequiredService<Switchboard.Server.Storage.IMessageStore>();
        var all = await store.ReadAfterAsync(conv, 0, long.MaxValue, 10_000);
        Assert.Single(all, e => e.Cid == refused);
        Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all.Select(e => e.Seq)); // no gap, no seq burnt
        await server.StopAsync();
    }

    /// <summary>The next ack or error.</summary>
    private static async Task<System.Text.Json.JsonElement> AnswerAsync(TestClient client)
    {
        while (true)
        {
            var frame = await client.NextAsync(TimeSpan.FromSeconds(30));
            if (frame.GetProperty("t").GetString() is "ack" or "error")
            {
                return frame;
            }
        }
    }

    /// <summary>A store that has just failed may need a moment to reopen; until then the answer stays unavailable.</summary>
    private static async Task<System.Text.Json.JsonElement> RetryUntilAckedAsync(TestClient client, string conv, string body, string cid)
    {
        for (var attempt = 0; ; attempt++)
        {
            await client.SendTextAsync(conv, body, cid);
            var answer = await AnswerAsync(client);
            if (answer.GetProperty("t").GetString() == "ack")
            {
                return answer;
            }

            Assert.Equal("unavailable", answer.GetProperty("code").GetString());
            Assert.True(attempt < 50, "the store did not recover once the disk had room");
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Edit_after_the_window_is_forbidden()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Messaging:EditWindowMinutes"] = "0",
        });
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        await alice.SendAckedAsync(conv, "too late to fix");
        await Task.Delay(20);
        await alice.SendAsync(new { t = "edit", cid = Guid.NewGuid().ToString(), conv, target = 1, body = "fixed" });
        var error = await alice.ExpectAsync("error");
        Assert.Equal("forbidden", error.GetProperty("code").GetString());
    }
}
