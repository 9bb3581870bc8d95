using System.Buffers.Text;
using System.Text.Json;
using Switchboard.Client;
using Switchboard.Client.E2ee;
using Switchboard.Protocol;

namespace Switchboard.Tests.E2ee;

/// <summary>
/// The construction itself, between devices in this process (their keys handed over as the directory would): X3DH,
/// the Double Ratchet's order, window and failures, Sender Keys. The same code meets the real server in E2eeClientTests.
/// </summary>
public sealed class RatchetTests
{
    /// <summary>A device with its own store, whose bundle the others fetch from its published keys.</summary>
    private sealed class Device
    {
        public Device(string user, int number, Dictionary<(string, int), KeyUpload> directory, bool oneTime = true)
        {
            User = user;
            Number = number;
            Store = new InMemoryE2eeStore();
            E2e = new EndToEnd(Store, (u, d, _) => Task.FromResult(directory.Where(p => p.Key.Item1 == u && (d is null || p.Key.Item2 == d)).Select(p => Bundle(p.Key, p.Value, oneTime)).ToList()));
            directory[(user, number)] = E2e.NewKeysAsync().GetAwaiter().GetResult()!;
        }

        public string User { get; }
        public int Number { get; }
        public InMemoryE2eeStore Store { get; }
        public EndToEnd E2e { get; }
        public DeviceAddress Address => new(User, Number);

        private static KeyBundle Bundle((string User, int Device) who, KeyUpload keys, bool oneTime)
        {
            var id = NextOneTime();
            return new(who.User, who.Device, keys.IdentityKey!, keys.SignedPrekey!)
            {
                IdentityDh = keys.IdentityDh,
                OneTimePrekey = oneTime ? keys.OneTimePrekeys!.First(k => k.Id == id) : null,
            };
        }

        private static int _handed;

        private static int NextOneTime() => (Interlocked.Increment(ref _handed) % EndToEnd.OneTimePrekeysPerUpload) + 1;
    }

    private static MsgFrame Frame(string conv, long seq, Device from, JsonElement e2ee) =>
        new() { T = "msg", Conv = conv, Seq = seq, Id = "1", Ts = 0, From = from.User, Dev = from.Number, Kind = "text", Cid = Guid.NewGuid().ToString(), E2ee = e2ee };

    /// <summary>The payload as the server hands it to <paramref name="to"/>: its own pairwise entry only.</summary>
    private static JsonElement For(JsonElement e2ee, Device to)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(e2ee.GetRawText())!.AsObject();
        if (node["to"] is System.Text.Json.Nodes.JsonArray array)
        {
            node["to"] = new System.Text.Json.Nodes.JsonArray([.. array.Where(e => (string)e!["user"]! == to.User && (int)e!["device"]! == to.Number).Select(e => e!.DeepClone())]);
        }

        return JsonSerializer.SerializeToElement(node);
    }

    private static async Task<string> OpenAsync(Device at, string conv, long seq, Device from, JsonElement e2ee) =>
        (await at.E2e.OpenAsync(Frame(conv, seq, from, For(e2ee, at)), at.User, at.Number)).Body!;

    private static Task<JsonElement> SealAsync(Device from, string text, params Device[] to) =>
        from.E2e.SealDirectAsync([.. to.Select(d => d.Address)], new Content { Body = text }, CancellationToken.None);

    [Fact]
    public async Task A_session_starts_from_a_bundle_and_both_sides_ratchet_through_a_conversation()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        for (var round = 0; round < 5; round++)
        {
            for (var i = 0; i < 3; i++)
            {
                var text = $"a{round}.{i}";
                Assert.Equal(text, await OpenAsync(bob, "dm", 1, alice, await SealAsync(alice, text, bob)));
            }

            var reply = $"b{round}";
            Assert.Equal(reply, await OpenAsync(alice, "dm", 1, bob, await SealAsync(bob, reply, alice)));
        }
    }

    [Fact]
    public async Task Messages_out_of_order_and_late_within_the_window_all_decrypt_once()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        var sealedTexts = new List<(string Text, JsonElement E2ee)>();
        for (var i = 0; i < 60; i++)
        {
            sealedTexts.Add(($"m{i}", await SealAsync(alice, $"m{i}", bob)));
            if (i == 30)
            {
                // A reply in the middle turns the ratchet: what alice sent before it arrives later still.
                Assert.Equal("m0", await OpenAsync(bob, "dm", 1, alice, sealedTexts[0].E2ee));
                Assert.Equal("turn", await OpenAsync(alice, "dm", 1, bob, await SealAsync(bob, "turn", alice)));
            }
        }

        foreach (var (text, e2ee) in sealedTexts.Skip(1).OrderBy(_ => Random.Shared.Next()))
        {
            Assert.Equal(text, await OpenAsync(bob, "dm", 1, alice, e2ee));
        }
    }

    [Fact]
    public async Task Tampered_replayed_and_foreign_ciphertexts_are_refused_and_the_session_goes_on()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        var bobLaptop = new Device("bob", 2, directory);
        var first = await SealAsync(alice, "first", bob, bobLaptop);
        Assert.Equal("first", await OpenAsync(bob, "dm", 1, alice, first));

        // Replayed: its key is used up (and a first message's ephemeral key starts one session only).
        await Assert.ThrowsAsync<DecryptionException>(() => OpenAsync(bob, "dm", 1, alice, first));

        // Tampered: one bit of the ciphertext flipped.
        var second = await SealAsync(alice, "second", bob, bobLaptop);
        var tampered = Mutate(For(second, bob), ct => ct[^1] ^= 1);
        await Assert.ThrowsAsync<DecryptionException>(() => bob.E2e.OpenAsync(Frame("dm", 2, alice, tampered), bob.User, bob.Number));

        // Another device's ciphertext given to bob's phone (as if the server mixed them up).
        var foreign = Relabel(For(second, bobLaptop), bob);
        await Assert.ThrowsAsync<DecryptionException>(() => bob.E2e.OpenAsync(Frame("dm", 2, alice, foreign), bob.User, bob.Number));

        // None of that hurt the sessions.
        Assert.Equal("second", await OpenAsync(bob, "dm", 2, alice, second));
        Assert.Equal("second", await OpenAsync(bobLaptop, "dm", 2, alice, second));
        Assert.Equal("third", await OpenAsync(bob, "dm", 3, alice, await SealAsync(alice, "third", bob, bobLaptop)));
        Assert.Equal("back", await OpenAsync(alice, "dm", 4, bob, await SealAsync(bob, "back", alice)));
    }

    [Fact]
    public async Task Skipping_past_the_window_is_refused_and_at_most_two_thousand_skipped_keys_are_kept()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        Assert.Equal("hello", await OpenAsync(bob, "dm", 1, alice, await SealAsync(alice, "hello", bob)));

        // Alice's messages that never arrive: her chain moves on (straight on the session, without the sealing around it).
        async Task LoseAsync(int count)
        {
            var session = JsonSerializer.Deserialize((await alice.Store.GetAsync("session", "bob:1"))!, E2eeJsonContext.Default.RatchetSession)!;
            for (var i = 0; i < count; i++)
            {
                session.Encrypt([0]);
            }

            await alice.Store.SetAsync("session", "bob:1", JsonSerializer.SerializeToUtf8Bytes(session, E2eeJsonContext.Default.RatchetSession));
        }

        // 2,500 lost: within the window; of their keys the newest 2,000 are kept.
        await LoseAsync(2_500);
        Assert.Equal("within", await OpenAsync(bob, "dm", 2, alice, await SealAsync(alice, "within", bob)));
        var bobSession = JsonSerializer.Deserialize((await bob.Store.GetAsync("session", "alice:1"))!, E2eeJsonContext.Default.RatchetSession)!;
        Assert.Equal(RatchetSession.MaxStoredSkipped, bobSession.Skipped.Count);

        // 25,001 lost: refused, and the session is as it was.
        await LoseAsync(RatchetSession.MaxSkip + 1);
        var tooFar = await SealAsync(alice, "too far", bob);
        var error = await Assert.ThrowsAsync<DecryptionException>(() => OpenAsync(bob, "dm", 3, alice, tooFar));
        Assert.Contains("25000", error.Message);
        Assert.Equal("still there", await OpenAsync(alice, "dm", 4, bob, await SealAsync(bob, "still there", alice)));
    }

    [Fact]
    public async Task Without_one_time_prekeys_a_session_starts_from_the_signed_prekey_alone()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory, oneTime: false);
        var bob = new Device("bob", 1, directory, oneTime: false);
        var first = await SealAsync(alice, "no one-time prekey", bob);
        Assert.Equal("no one-time prekey", await OpenAsync(bob, "dm", 1, alice, first));
        await Assert.ThrowsAsync<DecryptionException>(() => OpenAsync(bob, "dm", 1, alice, first)); // still not replayable
    }

    [Fact]
    public async Task A_group_message_is_encrypted_once_and_read_by_each_device_the_sender_key_was_handed_to()
    {
        var directory = new Dictionary<(string, int), KeyUpload>();
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        var carol = new Device("carol", 1, directory);
        var members = new[] { bob.Address, carol.Address };
        var sealedTexts = new List<(string, JsonElement)>();
        for (var i = 0; i < 20; i++)
        {
            sealedTexts.Add(($"g{i}", await alice.E2e.SealGroupAsync("g:1", members, new Content { Body = $"g{i}" }, CancellationToken.None)));
        }

        Assert.Equal(2, sealedTexts[0].Item2.GetProperty("to").GetArrayLength()); // the key handed out with the first
        Assert.Equal(0, sealedTexts[1].Item2.GetProperty("to").GetArrayLength()); // then one ciphertext for all
        Assert.Equal(EndToEnd.DeviceSetDigest(members), sealedTexts[1].Item2.GetProperty("devices").GetString());

        foreach (var reader in new[] { bob, carol })
        {
            Assert.Equal("g0", await OpenAsync(reader, "g:1", 1, alice, sealedTexts[0].Item2));
            foreach (var (text, e2ee) in sealedTexts.Skip(1).OrderBy(_ => Random.Shared.Next()))
            {
                Assert.Equal(text, await OpenAsync(reader, "g:1", 2, alice, e2ee));
            }
        }

        // Signed by the sender key: a flipped bit is refused, and the chain goes on.
        var next = await alice.E2e.SealGroupAsync("g:1", members, new Content { Body = "after" }, CancellationToken.None);
        var forged = Mutate(For(next, bob), sk => sk[20] ^= 1, "sk");
        await Assert.ThrowsAsync<DecryptionException>(() => bob.E2e.OpenAsync(Frame("g:1", 3, alice, forged), bob.User, bob.Number));
        Assert.Equal("after", await OpenAsync(bob, "g:1", 3, alice, next));

        // Carol is removed: the next send makes a new sender key for bob alone; carol cannot read it.
        var afterRemoval = await alice.E2e.SealGroupAsync("g:1", [bob.Address], new Content { Body = "carol is gone" }, CancellationToken.None);
        Assert.Equal(1, afterRemoval.GetProperty("to").GetArrayLength());
        Assert.Equal("carol is gone", await OpenAsync(bob, "g:1", 4, alice, afterRemoval));
        await Assert.ThrowsAsync<DecryptionException>(() => carol.E2e.OpenAsync(Frame("g:1", 4, alice, For(afterRemoval, carol)), carol.User, carol.Number));
    }

    private static JsonElement Mutate(JsonElement e2ee, Action<byte[]> change, string field = "to")
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(e2ee.GetRawText())!.AsObject();
        if (field == "sk")
        {
            var bytes = Base64Url.DecodeFromChars((string)node["sk"]!);
            change(bytes);
            node["sk"] = Base64Url.EncodeToString(bytes);
        }
        else
        {
            var entry = node["to"]![0]!;
            var bytes = Base64Url.DecodeFromChars((string)entry["ct"]!);
            change(bytes);
            entry["ct"] = Base64Url.EncodeToString(bytes);
        }

        return JsonSerializer.SerializeToElement(node);
    }

    private static JsonElement Relabel(JsonElement e2ee, Device to)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(e2ee.GetRawText())!.AsObject();
        node["to"]![0]!["user"] = to.User;
        node["to"]![0]!["device"] = to.Number;
        return JsonSerializer.SerializeToElement(node);
    }
}
