using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Switchboard.Client;
using Switchboard.Client.E2ee;
using Switchboard.Protocol;

namespace Switchboard.Tests.E2ee;

/// <summary>End-to-end encryption through the SDK, against the real server: what each device reads, and what the server holds.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class E2eeClientTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    /// <summary>An SDK device with its own end-to-end store, and what its application is handed.</summary>
    private sealed class Device : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _pump;

        public Device(SwitchboardClient client, string user, int number)
        {
            Client = client;
            User = user;
            Number = number;
            _pump = Task.Run(async () =>
            {
                try
                {
                    await foreach (var e in client.ReadEventsAsync(_stop.Token))
                    {
                        if (e is MessageReceived received)
                        {
                            Received.Enqueue(received);
                        }
                        else if (e is MessageDecrypted decrypted)
                        {
                            Decrypted.Enqueue(decrypted);
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });
        }

        public SwitchboardClient Client { get; }
        public string User { get; }
        public int Number { get; }
        public ConcurrentQueue<MessageReceived> Received { get; } = new();

        public ConcurrentQueue<MessageDecrypted> Decrypted { get; } = new();

        public async Task<MessageReceived> WaitForAsync(Func<MessageReceived, bool> match, string what)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (DateTime.UtcNow < deadline)
            {
                if (Received.FirstOrDefault(match) is { } found)
                {
                    return found;
                }

                await Task.Delay(20);
            }

            throw new TimeoutException($"{User}/{Number} never got {what}; it got: {string.Join(" | ", Received.Select(r => r.Text ?? $"[{r.DecryptionError}]"))}");
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await _stop.CancelAsync();
            await _pump;
            _stop.Dispose();
        }
    }

    private async Task<Device> DeviceAsync(string user, IE2eeStore? store = null)
    {
        var (number, token) = await Server.LinkAsync(user);
        var client = new SwitchboardClient(Server.Address, token, new SwitchboardClientOptions { E2eeStore = store ?? new InMemoryE2eeStore() });
        await client.ConnectAsync();
        return new Device(client, user, number);
    }

    [Fact]
    public async Task Every_device_of_two_users_with_three_devices_each_reads_every_other_devices_messages()
    {
        var alice = await Server.RegisterAsync();
        var bob = await Server.RegisterAsync();
        var devices = new List<Device>();
        foreach (var user in new[] { alice, bob, alice, bob, alice, bob })
        {
            devices.Add(await DeviceAsync(user));
        }

        await using var _ = new AsyncDisposables(devices);
        var conv = Conv.Direct(alice, bob);
        foreach (var sender in devices)
        {
            var text = $"from {sender.User}/{sender.Number}";
            await sender.Client.SendTextAsync(conv, text);
            foreach (var reader in devices.Where(d => d != sender))
            {
                var got = await reader.WaitForAsync(r => r.Text == text, text);
                Assert.NotNull(got.Message.E2ee);
                Assert.Null(got.Message.Body);
            }
        }

        Assert.All(devices, d => Assert.DoesNotContain(d.Received, r => r.DecryptionError is not null));

        // The server holds ciphertext only: no text in any stored event, through history.
        var (status, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", (await Server.LinkAsync(alice)).Token);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(6, history.GetProperty("messages").GetArrayLength());
        Assert.DoesNotContain("from ", history.GetRawText(), StringComparison.Ordinal);

        // Each device reads the history by what it kept: the text of what it sent and what it decrypted.
        var first = devices[0];
        var page = await first.Client.GetHistoryAsync(conv);
        var texts = new List<string?>();
        foreach (var message in page.Messages)
        {
            texts.Add(await first.Client.ReadableTextAsync(message));
        }

        Assert.Equal(devices.Select(d => $"from {d.User}/{d.Number}").Order(), texts.Order());
    }

    [Fact]
    public async Task Both_sides_compute_the_same_safety_number_and_it_changes_with_a_new_device()
    {
        var alice = await DeviceAsync(await Server.RegisterAsync());
        var bob = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = new AsyncDisposables([alice, bob]);
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.Client.SendTextAsync(conv, "hi");
        await bob.WaitForAsync(r => r.Text == "hi", "hi");
        await bob.Client.SendTextAsync(conv, "hello");
        await alice.WaitForAsync(r => r.Text == "hello", "hello");

        var seenByAlice = await alice.Client.GetSafetyNumberAsync(bob.User);
        Assert.Matches("^([0-9]{5} ){11}[0-9]{5}$", seenByAlice);
        Assert.Equal(seenByAlice, await bob.Client.GetSafetyNumberAsync(alice.User));

        await using var laptop = await DeviceAsync(bob.User);
        await alice.Client.SendTextAsync(conv, "to both");
        await laptop.WaitForAsync(r => r.Text == "to both", "the message after linking");
        Assert.NotEqual(seenByAlice, await alice.Client.GetSafetyNumberAsync(bob.User));
    }

    [Fact]
    public async Task A_device_that_lost_its_session_reports_the_failure_and_the_sender_resends_on_a_new_one()
    {
        var aliceStore = new InMemoryE2eeStore();
        var bobStore = new InMemoryE2eeStore();
        var alice = await DeviceAsync(await Server.RegisterAsync(), aliceStore);
        var bob = await DeviceAsync(await Server.RegisterAsync(), bobStore);
        await using var _ = new AsyncDisposables([alice, bob]);
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.Client.SendTextAsync(conv, "one");
        await bob.WaitForAsync(r => r.Text == "one", "the first message");
        await bob.Client.SendTextAsync(conv, "reply");
        await alice.WaitForAsync(r => r.Text == "reply", "the reply");

        // Bob's device loses its session (a restore from an old backup, say).
        await bobStore.DeleteAsync("session", $"{alice.User}:{alice.Number}");
        var two = await alice.Client.SendTextAsync(conv, "two");
        var failed = await bob.WaitForAsync(r => r.Message.Seq == two.Seq, "the second message");
        Assert.Null(failed.Text);
        Assert.Contains("no session", failed.DecryptionError);

        // Told (no content) through the server, alice's device sends it again on a new session.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!bob.Decrypted.Any(d => d.Seq == two.Seq))
        {
            Assert.True(DateTime.UtcNow < deadline, "no resend came");
            await Task.Delay(50);
        }

        Assert.Equal("two", bob.Decrypted.Single(d => d.Seq == two.Seq).Text);
        var page = await bob.Client.GetHistoryAsync(conv);
        Assert.Equal("two", await bob.Client.ReadableTextAsync(page.Messages.Single(m => m.Seq == two.Seq)));

        // The new session carries on both ways.
        await alice.Client.SendTextAsync(conv, "three");
        await bob.WaitForAsync(r => r.Text == "three", "the message after the resend");
        await bob.Client.SendTextAsync(conv, "four");
        await alice.WaitForAsync(r => r.Text == "four", "bob's answer on the new session");

        var metrics = await Server.Http.GetStringAsync("/metrics");
        Assert.Matches(@"switchboard_e2ee_decrypt_failures_total [1-9]", metrics);
        Assert.Matches(@"switchboard_e2ee_resends_total [1-9]", metrics);
    }

    [Fact]
    public async Task A_large_groups_first_message_hands_out_its_sender_key_in_key_events_ahead_of_it()
    {
        var alice = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = alice;
        // Ninety members, each with one device whose keys are published (no socket needed for that); two of them read.
        await using var first = await DeviceAsync(await Server.RegisterAsync());
        await using var last = await DeviceAsync(await Server.RegisterAsync());
        var members = new List<string> { first.User };
        for (var i = 0; i < 88; i++)
        {
            var user = await Server.RegisterAsync();
            var (_, token) = await Server.LinkAsync(user);
            await using var publisher = new SwitchboardClient(Server.Address, token, new SwitchboardClientOptions { E2eeStore = new InMemoryE2eeStore() });
            await publisher.PublishKeysAsync();
            members.Add(user);
        }

        members.Add(last.User);
        var group = await alice.Client.CreateGroupAsync("big", members);
        var ack = await alice.Client.SendTextAsync(group.Conv, "to ninety-odd devices");
        await first.WaitForAsync(r => r.Text == "to ninety-odd devices", "the group message");
        await last.WaitForAsync(r => r.Text == "to ninety-odd devices", "the group message");

        var page = await first.Client.GetHistoryAsync(group.Conv, limit: 100);
        var keyEvents = page.Messages.Where(m => m.Kind == EventKinds.Key).ToList();
        Assert.NotEmpty(keyEvents); // the hand-outs did not fit in the message
        Assert.All(keyEvents, k => Assert.True(k.Seq < ack.Seq));
        Assert.DoesNotContain(first.Received, r => r.DecryptionError is not null);
        Assert.DoesNotContain(last.Received, r => r.DecryptionError is not null);
    }

    private sealed class Shifted(TimeSpan by) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + by;
    }

    [Fact]
    public async Task A_week_old_signed_prekey_is_replaced_and_first_messages_made_with_the_old_one_still_open()
    {
        var bobUser = await Server.RegisterAsync();
        var (bobNumber, bobToken) = await Server.LinkAsync(bobUser);
        var bobStore = new InMemoryE2eeStore();
        await using (var publisher = new SwitchboardClient(Server.Address, bobToken, new SwitchboardClientOptions { E2eeStore = bobStore }))
        {
            await publisher.PublishKeysAsync();
        }

        // Carol starts her session from the current bundle (signed prekey 1) before bob rotates.
        var carol = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = carol;
        var withCarol = Conv.Direct(carol.User, bobUser);
        await carol.Client.SendTextAsync(withCarol, "made with signed prekey 1");

        // Eight days on, bob's device connects: a new signed prekey is published; the old one is kept.
        var bobClient = new SwitchboardClient(Server.Address, bobToken, new SwitchboardClientOptions { E2eeStore = bobStore, Clock = new Shifted(TimeSpan.FromDays(8)) });
        await using var bob = new Device(bobClient, bobUser, bobNumber);
        await bobClient.ConnectAsync();
        var stranger = await Server.NewClientAsync();
        var bundle = (await Server.GetAsync($"/v1/users/{bobUser}/keys", stranger.Token)).Body[0];
        Assert.Equal(2, bundle.GetProperty("signed_prekey").GetProperty("id").GetInt32());
        await bob.WaitForAsync(r => r.Text == "made with signed prekey 1", "the message made with the old signed prekey");

        // A session started now uses the new one.
        var dave = await DeviceAsync(await Server.RegisterAsync());
        await using var __ = dave;
        await dave.Client.SendTextAsync(Conv.Direct(dave.User, bobUser), "made with signed prekey 2");
        await bob.WaitForAsync(r => r.Text == "made with signed prekey 2", "the message made with the new signed prekey");
    }

    [Fact]
    public async Task Sends_made_at_once_are_stored_and_read_in_the_order_they_were_made_though_keys_are_fetched_first()
    {
        var alice = await DeviceAsync(await Server.RegisterAsync());
        var bob = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = new AsyncDisposables([alice, bob]);
        var conv = Conv.Direct(alice.User, bob.User);
        // None awaited before the next: the first finds no devices known, is refused, fetches bob's keys, is sent again.
        var sends = Enumerable.Range(0, 8).Select(i => alice.Client.SendTextAsync(conv, $"in order {i}")).ToList();
        var acks = await Task.WhenAll(sends);
        Assert.Equal(acks.Select(a => a.Seq).Order(), acks.Select(a => a.Seq)); // stored in the order they were made
        await bob.WaitForAsync(r => r.Text == "in order 7", "the last");
        Assert.Equal(Enumerable.Range(0, 8).Select(i => $"in order {i}"), bob.Received.Select(r => r.Text));
    }

    [Fact]
    public async Task A_device_linked_mid_conversation_reads_what_follows_after_devices_changed()
    {
        var alice = await DeviceAsync(await Server.RegisterAsync());
        var bobUser = await Server.RegisterAsync();
        var bob = await DeviceAsync(bobUser);
        await using var _ = new AsyncDisposables([alice, bob]);
        var conv = Conv.Direct(alice.User, bobUser);
        await alice.Client.SendTextAsync(conv, "before the laptop");
        await bob.WaitForAsync(r => r.Text == "before the laptop", "the first message");

        await using var laptop = await DeviceAsync(bobUser);
        var ack = await alice.Client.SendTextAsync(conv, "after the laptop"); // refused once (devices_changed), sent again for three devices
        Assert.False(ack.Dup);
        await laptop.WaitForAsync(r => r.Text == "after the laptop", "the message sent after it was linked");
        await bob.WaitForAsync(r => r.Text == "after the laptop", "the second message");

        // What was sent before the laptop was linked was not encrypted for it.
        var history = await laptop.Client.GetHistoryAsync(conv);
        var before = history.Messages.Single(m => m.Seq == 1);
        Assert.Null(await laptop.Client.ReadableTextAsync(before));
        await Assert.ThrowsAsync<DecryptionException>(() => laptop.Client.EndToEnd!.OpenAsync(before, laptop.User, laptop.Number));
    }

    [Fact]
    public async Task A_removed_group_member_cannot_decrypt_what_is_sent_after_the_sender_key_is_rotated()
    {
        var alice = await DeviceAsync(await Server.RegisterAsync());
        var bob = await DeviceAsync(await Server.RegisterAsync());
        var carol = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = new AsyncDisposables([alice, bob, carol]);
        var group = await alice.Client.CreateGroupAsync("sealed", [bob.User, carol.User]);
        await alice.Client.SendTextAsync(group.Conv, "all three");
        await bob.WaitForAsync(r => r.Text == "all three", "the group message");
        await carol.WaitForAsync(r => r.Text == "all three", "the group message");
        await bob.Client.SendTextAsync(group.Conv, "bob too");
        await carol.WaitForAsync(r => r.Text == "bob too", "bob's group message");

        await alice.Client.RemoveMemberAsync(group.Conv, carol.User);
        await alice.Client.SendTextAsync(group.Conv, "carol is gone");
        var received = await bob.WaitForAsync(r => r.Text == "carol is gone", "the message after the removal");

        // Carol gets the ciphertext anyway (as if she had kept reading the server): her keys do not open it.
        var stolen = received.Message with { E2ee = JsonSerializer.SerializeToElement(new { v = 1, sk = received.Message.E2ee!.Value.GetProperty("sk").GetString(), to = Array.Empty<object>() }) };
        var error = await Assert.ThrowsAsync<DecryptionException>(() => carol.Client.EndToEnd!.OpenAsync(stolen, carol.User, carol.Number));
        Assert.Contains("no sender key", error.Message);
    }

    [Fact]
    public async Task With_its_one_time_prekeys_used_up_a_device_is_still_reached_and_is_told_to_upload_more()
    {
        var bobUser = await Server.RegisterAsync();
        var (bobNumber, bobToken) = await Server.LinkAsync(bobUser);
        var bobStore = new InMemoryE2eeStore();
        await using (var offline = new SwitchboardClient(Server.Address, bobToken, new SwitchboardClientOptions { E2eeStore = bobStore }))
        {
            await offline.PublishKeysAsync(); // keys published, no socket
        }

        var thief = await Server.NewClientAsync();
        for (var i = 0; i < EndToEnd.OneTimePrekeysPerUpload; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await Server.GetAsync($"/v1/users/{bobUser}/keys", thief.Token)).Status);
        }

        Assert.Equal(0, (await Server.GetAsync("/v1/devices/current/keys", bobToken)).Body.GetProperty("one_time_prekeys").GetInt32());
        var alice = await DeviceAsync(await Server.RegisterAsync());
        await using var _ = alice;
        var conv = Conv.Direct(alice.User, bobUser);
        await alice.Client.SendTextAsync(conv, "signed prekey only"); // X3DH without a one-time prekey

        var bobClient = new SwitchboardClient(Server.Address, bobToken, new SwitchboardClientOptions { E2eeStore = bobStore });
        await using var bob = new Device(bobClient, bobUser, bobNumber);
        await bobClient.ConnectAsync();
        await bob.WaitForAsync(r => r.Text == "signed prekey only", "the message");

        // Back online, bob's SDK saw its supply used up and uploaded more.
        async Task<int> LeftAsync() => (await Server.GetAsync("/v1/devices/current/keys", bobToken)).Body.GetProperty("one_time_prekeys").GetInt32();
        var left = await LeftAsync();
        Assert.True(left > 0, "no one-time prekeys uploaded on connect");

        // Used up again while bob is online: a fetch that leaves fewer than ten tells his socket (keys_low), and his SDK uploads more.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        var second = await Server.NewClientAsync(); // key fetches are limited per caller
        while (true)
        {
            Assert.Equal(HttpStatusCode.OK, (await Server.GetAsync($"/v1/users/{bobUser}/keys", second.Token)).Status);
            var now = await LeftAsync();
            if (now > left)
            {
                break; // topped up
            }

            Assert.True(DateTime.UtcNow < deadline, $"no upload after keys_low ({now} left)");
            left = now;
            if (now == 0)
            {
                await Task.Delay(100);
            }
        }
    }

    [Fact]
    public async Task Text_sent_end_to_end_is_nowhere_in_the_servers_data_directory()
    {
        await using var server = await TestServer.StartAsync();
        var aliceUser = await server.RegisterAsync();
        var bobUser = await server.RegisterAsync();
        async Task<Device> On(string user)
        {
            var (number, token) = await server.LinkAsync(user);
            var client = new SwitchboardClient(server.Address, token, new SwitchboardClientOptions { E2eeStore = new InMemoryE2eeStore() });
            await client.ConnectAsync();
            return new Device(client, user, number);
        }

        await using var alice = await On(aliceUser);
        await using var bob = await On(bobUser);
        var conv = Conv.Direct(aliceUser, bobUser);
        var canary = $"canary-{Guid.NewGuid():N}";
        await alice.Client.SendTextAsync(conv, canary);
        await bob.WaitForAsync(r => r.Text == canary, "the canary");
        await bob.Client.SendTextAsync(conv, canary + "-reply");
        await alice.WaitForAsync(r => r.Text == canary + "-reply", "the reply");

        // A plain message beside it, which the scan must find: the scan reads what the server wrote.
        var control = $"control-{Guid.NewGuid():N}";
        var plain = await server.NewClientAsync(aliceUser);
        await plain.SendAckedAsync(conv, control);

        Assert.NotEmpty(server.FilesHolding(control)); // else the scan proves nothing
        Assert.Empty(server.FilesHolding(canary)); // end-to-end encrypted text in none of the server's files
    }

    private sealed class AsyncDisposables(IEnumerable<IAsyncDisposable> items) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var item in items)
            {
                await item.DisposeAsync();
            }
        }
    }
}

public sealed class E2eeClientTestsEmbedded(ServerFixture fixture) : E2eeClientTests(fixture), IClassFixture<ServerFixture>;

public sealed class E2eeClientTestsCluster(Cluster.ClusterNodeFixture fixture) : E2eeClientTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
