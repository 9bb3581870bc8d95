using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Run on the embedded server and on a node of a cluster (<see cref="MessagingTestsEmbedded"/>, <see cref="MessagingTestsCluster"/>).</summary>
public abstract class MessagingTests(IServerFixture fixture)
{
    /// <summary>Whether the server under test keeps cids per conversation (cluster mode) rather than per sender.</summary>
    protected virtual bool CidPerConversation => false;

    private TestServer Server => fixture.Server;

    [Fact]
    public async Task Send_is_acked_and_delivered_to_every_other_device_of_both_users()
    {
        var alice = await Server.NewClientAsync();
        var alice2 = await Server.NewDeviceAsync(alice.User);
        var bob = await Server.NewClientAsync();
        var bob2 = await Server.NewDeviceAsync(bob.User);
        var conv = Conv.Direct(alice.User, bob.User);

        var ack = await alice.SendAckedAsync(conv, "hello bob");
        Assert.Equal(conv, ack.GetProperty("conv").GetString());
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());
        Assert.False(ack.GetProperty("dup").GetBoolean());
        Assert.True(long.Parse(ack.GetProperty("id").GetString()!) > 0);

        foreach (var receiver in new[] { alice2, bob, bob2 })
        {
            var msg = await receiver.ExpectAsync("msg");
            Assert.Equal("hello bob", msg.GetProperty("body").GetString());
            Assert.Equal(alice.User, msg.GetProperty("from").GetString());
            Assert.Equal(alice.Device, msg.GetProperty("dev").GetInt32());
            Assert.Equal(1, msg.GetProperty("seq").GetInt64());
            Assert.Equal(ack.GetProperty("id").GetString(), msg.GetProperty("id").GetString());
        }

        // The sending device gets its ack, not a copy of its own message.
        Assert.DoesNotContain(await alice.DrainAsync(), f => f.GetProperty("t").GetString() == "msg");
    }

    [Fact]
    public async Task Resend_with_same_cid_returns_original_ack_and_stores_nothing_new()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        var cid = Guid.NewGuid().ToString();

        var first = await alice.SendAckedAsync(conv, "once", cid);
        var second = await alice.SendAckedAsync(conv, "twice, different body", cid);
        // Even with a different conversation the cid is the same event.
        var carol = await Server.RegisterAsync();
        var third = await alice.SendAckedAsync(Conv.Direct(alice.User, carol), "elsewhere", cid);

        if (CidPerConversation)
        {
            // Cluster mode: a cid is unique per (sender, conversation) (docs/protocol.md): another event elsewhere.
            Assert.False(third.GetProperty("dup").GetBoolean());
            Assert.Equal(Conv.Direct(alice.User, carol), third.GetProperty("conv").GetString());
        }

        foreach (var dup in CidPerConversation ? new[] { second } : [second, third])
        {
            Assert.True(dup.GetProperty("dup").GetBoolean());
            Assert.Equal(first.GetProperty("seq").GetInt64(), dup.GetProperty("seq").GetInt64());
            Assert.Equal(first.GetProperty("id").GetString(), dup.GetProperty("id").GetString());
            Assert.Equal(conv, dup.GetProperty("conv").GetString());
        }

        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.Single(history.GetProperty("messages").EnumerateArray());
        var msgs = (await bob.DrainAsync()).Where(f => f.GetProperty("t").GetString() == "msg").ToList();
        Assert.Single(msgs);
    }

    [Fact]
    public async Task Pipelined_sends_get_seqs_in_frame_order_and_arrive_in_seq_order()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        const int count = 200;
        var cids = new List<string>();
        for (var i = 0; i < count; i++)
        {
            cids.Add(await alice.SendTextAsync(conv, $"m{i}"));
        }

        var acks = new Dictionary<string, long>();
        while (acks.Count < count)
        {
            var ack = await alice.ExpectAsync("ack");
            acks[ack.GetProperty("cid").GetString()!] = ack.GetProperty("seq").GetInt64();
        }

        for (var i = 0; i < count; i++)
        {
            Assert.Equal(i + 1, acks[cids[i]]);
        }

        for (var i = 0; i < count; i++)
        {
            var msg = await bob.ExpectAsync("msg");
            Assert.Equal(i + 1, msg.GetProperty("seq").GetInt64());
            Assert.Equal($"m{i}", msg.GetProperty("body").GetString());
        }
    }

    [Fact]
    public async Task Offline_device_gets_missed_events_in_order_then_live_excluding_its_own_sends()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (bobDevice, bobToken) = await Server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);

        // Bob's device sends while online, then goes away.
        var bob = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        await bob.ExpectAsync("live");
        await bob.SendAckedAsync(conv, "from bob");
        await bob.CloseAsync();
        await bob.DisposeAsync();

        for (var i = 0; i < 30; i++)
        {
            await alice.SendAckedAsync(conv, $"while away {i}");
        }

        var again = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        var replayed = TestClient.Messages(await again.UntilLiveAsync());
        Assert.All(replayed, m => Assert.Equal(alice.User, m.GetProperty("from").GetString()));
        var seqs = replayed.Select(m => m.GetProperty("seq").GetInt64()).ToList();

        Assert.Equal(Enumerable.Range(2, 30).Select(i => (long)i), seqs);

        // Live from here on.
        await alice.SendAckedAsync(conv, "now live");
        var live = await again.ExpectAsync("msg");
        Assert.Equal(32, live.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task Recv_moves_the_cursor_so_a_reconnect_replays_only_what_follows()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (bobDevice, bobToken) = await Server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        for (var i = 0; i < 5; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        var bob = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        await bob.ExpectAsync("live");
        await bob.SendAsync(new { t = "recv", conv, seq = 3 });
        await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "delivered" && f.GetProperty("seq").GetInt64() == 3);
        await bob.SendAsync(new { t = "recv", conv, seq = 1 }); // lower: ignored, never moves back
        await bob.SendAsync(new { t = "ping" });
        await bob.ExpectAsync("pong");
        await bob.CloseAsync();

        var again = await TestClient.ConnectAsync(Server, bobUser, bobDevice, bobToken);
        var frames = TestClient.Messages(await again.UntilLiveAsync()).Select(m => m.GetProperty("seq").GetInt64()).ToList();

        Assert.Equal([4L, 5L], frames);
    }

    [Fact]
    public async Task Read_sends_receipts_to_the_sender_and_the_readers_other_devices()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var bob2 = await Server.NewDeviceAsync(bob.User);
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.SendAckedAsync(conv, "read me");
        await bob.ExpectAsync("msg");
        await bob2.ExpectAsync("msg");

        await bob.SendAsync(new { t = "read", conv, seq = 1 });
        // read implies delivered
        var delivered = await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "delivered");
        Assert.Equal(bob.User, delivered.GetProperty("user").GetString());
        var read = await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "read");
        Assert.Equal(1, read.GetProperty("seq").GetInt64());
        Assert.Equal(conv, read.GetProperty("conv").GetString());
        var own = await bob2.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "read");
        Assert.Equal(bob.User, own.GetProperty("user").GetString());

        // Beyond what exists is clamped to the last seq.
        await bob.SendAsync(new { t = "read", conv, seq = 999 });
        var (_, rows) = await Server.GetAsync($"/v1/conversations/{conv}/receipts?seq=1", alice.Token);
        var bobRow = rows.EnumerateArray().Single(r => r.GetProperty("user").GetString() == bob.User);
        Assert.Equal(1, bobRow.GetProperty("read").GetInt64());
        Assert.Equal(1, bobRow.GetProperty("delivered").GetInt64());
    }

    [Fact]
    public async Task Sync_repairs_a_gap_within_the_bounds()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        for (var i = 0; i < 10; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        await alice.SendAsync(new { t = "sync", conv, after = 3, limit = 4 });
        var seqs = new List<long>();
        JsonElement synced;
        while (true)
        {
            var frame = await alice.NextAsync();
            if (frame.GetProperty("t").GetString() == "synced")
            {
                synced = frame;
                break;
            }

            if (frame.GetProperty("t").GetString() == "msg")
            {
                seqs.Add(frame.GetProperty("seq").GetInt64());
            }
        }

        Assert.Equal([4L, 5L, 6L, 7L], seqs);
        Assert.Equal(7, synced.GetProperty("upto").GetInt64());
        Assert.True(synced.GetProperty("more").GetBoolean());

        await alice.SendAsync(new { t = "sync", conv, after = 10 });
        var end = await alice.ExpectAsync("synced");
        Assert.Equal(10, end.GetProperty("upto").GetInt64());
        Assert.False(end.GetProperty("more").GetBoolean());
    }

    [Fact]
    public async Task Edit_and_delete_are_events_that_only_the_author_may_make()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.SendAckedAsync(conv, "typo");

        var editCid = Guid.NewGuid().ToString();
        await alice.SendAsync(new { t = "edit", cid = editCid, conv, target = 1, body = "fixed" });
        var editAck = await alice.ExpectAsync("ack", f => f.GetProperty("cid").GetString() == editCid);
        Assert.Equal(2, editAck.GetProperty("seq").GetInt64());
        var edit = await bob.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "edit");
        Assert.Equal(1, edit.GetProperty("target").GetInt64());
        Assert.Equal("fixed", edit.GetProperty("body").GetString());

        // Bob may neither edit nor delete Alice's message.
        var bobEdit = Guid.NewGuid().ToString();
        await bob.SendAsync(new { t = "edit", cid = bobEdit, conv, target = 1, body = "hacked" });
        var error = await bob.ExpectAsync("error");
        Assert.Equal("forbidden", error.GetProperty("code").GetString());
        Assert.Equal(bobEdit, error.GetProperty("ref").GetString());
        await bob.SendAsync(new { t = "delete", cid = Guid.NewGuid().ToString(), conv, target = 1 });
        Assert.Equal("forbidden", (await bob.ExpectAsync("error")).GetProperty("code").GetString());

        // An edit event cannot itself be edited; a delete works once.
        await alice.SendAsync(new { t = "edit", cid = Guid.NewGuid().ToString(), conv, target = 2, body = "x" });
        Assert.Equal("not_found", (await alice.ExpectAsync("error")).GetProperty("code").GetString());
        var deleteCid = Guid.NewGuid().ToString();
        await alice.SendAsync(new { t = "delete", cid = deleteCid, conv, target = 1 });
        Assert.Equal(3, (await alice.ExpectAsync("ack", f => f.GetProperty("cid").GetString() == deleteCid)).GetProperty("seq").GetInt64());
        await alice.SendAsync(new { t = "delete", cid = Guid.NewGuid().ToString(), conv, target = 1 });
        Assert.Equal("not_found", (await alice.ExpectAsync("error")).GetProperty("code").GetString());

        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.Equal(["delete", "edit", "text"], history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("kind").GetString()!));
    }

    [Fact]
    public async Task History_pages_newest_first_with_before_and_more()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bob);
        for (var i = 1; i <= 7; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        var (status, page) = await Server.GetAsync($"/v1/conversations/{conv}/messages?limit=3", alice.Token);
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        Assert.Equal([7L, 6L, 5L], page.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()));
        Assert.True(page.GetProperty("more").GetBoolean());
        Assert.False(page.GetProperty("messages")[0].TryGetProperty("t", out _));

        var (_, older) = await Server.GetAsync($"/v1/conversations/{conv}/messages?before=5&limit=10", alice.Token);
        Assert.Equal([4L, 3L, 2L, 1L], older.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()));
        Assert.False(older.GetProperty("more").GetBoolean());

        var (bad, error) = await Server.GetAsync($"/v1/conversations/{conv}/messages?limit=abc", alice.Token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad);
        Assert.Equal("invalid", error.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Conversation_list_shows_cursors_and_unread_counts()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        var (_, empty) = await Server.GetAsync("/v1/conversations", bob.Token);
        Assert.Empty(empty.EnumerateArray());

        for (var i = 0; i < 4; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        await bob.SendAsync(new { t = "read", conv, seq = 1 });
        await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "read");
        var (_, list) = await Server.GetAsync("/v1/conversations", bob.Token);
        var row = Assert.Single(list.EnumerateArray());
        Assert.Equal(conv, row.GetProperty("conv").GetString());
        Assert.Equal("direct", row.GetProperty("kind").GetString());
        Assert.Equal(4, row.GetProperty("last_seq").GetInt64());
        Assert.Equal(1, row.GetProperty("read").GetInt64());
        Assert.Equal(1, row.GetProperty("delivered").GetInt64());
        Assert.Equal(3, row.GetProperty("unread").GetInt64());

        // The sender's own messages are never unread for the sender.
        var (_, mine) = await Server.GetAsync("/v1/conversations", alice.Token);
        Assert.Equal(0, Assert.Single(mine.EnumerateArray()).GetProperty("unread").GetInt64());
    }

    [Fact]
    public async Task A_newly_linked_device_starts_at_the_last_seq()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.SendAckedAsync(conv, "before the new device");

        var bobNew = await Server.NewDeviceAsync(bob.User); // NewDeviceAsync waited for live: nothing before it
        await alice.SendAckedAsync(conv, "after");
        var msg = await bobNew.ExpectAsync("msg");
        Assert.Equal(2, msg.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task Receipts_that_moved_while_away_are_sent_before_live()
    {
        var aliceUser = await Server.RegisterAsync();
        var (aliceDevice, aliceToken) = await Server.LinkAsync(aliceUser);
        var alice = await TestClient.ConnectAsync(Server, aliceUser, aliceDevice, aliceToken);
        await alice.ExpectAsync("live");
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(aliceUser, bob.User);
        await alice.SendAckedAsync(conv, "read this later");
        await alice.CloseAsync();
        await Task.Delay(50);

        await bob.ExpectAsync("msg");
        await bob.SendAsync(new { t = "read", conv, seq = 1 });
        await bob.SendAsync(new { t = "ping" });
        await bob.ExpectAsync("pong");
        await Task.Delay(100);

        var back = await TestClient.ConnectAsync(Server, aliceUser, aliceDevice, aliceToken);
        var frames = await back.UntilLiveAsync();

        Assert.Contains(frames, f => f.GetProperty("t").GetString() == "receipt" && f.GetProperty("kind").GetString() == "read" && f.GetProperty("user").GetString() == bob.User && f.GetProperty("seq").GetInt64() == 1);
    }
}

public sealed class MessagingTestsEmbedded(ServerFixture fixture) : MessagingTests(fixture), IClassFixture<ServerFixture>;

public sealed class MessagingTestsCluster(Cluster.ClusterNodeFixture fixture) : MessagingTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>
{
    protected override bool CidPerConversation => true;
}
