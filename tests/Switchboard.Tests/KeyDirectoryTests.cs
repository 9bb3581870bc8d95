using System.Buffers.Text;
using System.Net;
using System.Text.Json;
using NSec.Cryptography;

namespace Switchboard.Tests;

/// <summary>The key directory: public keys per device, one-time prekeys handed out once; and RequireE2ee.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class KeyDirectoryTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private static string B64(ReadOnlySpan<byte> bytes) => Base64Url.EncodeToString(bytes);

    /// <summary>A device's keys as a client makes them: an Ed25519 identity signing its X25519 identity key and an X25519 prekey.</summary>
    private static object Upload(Key identity, int oneTimeFrom, int oneTimeCount, bool badSignature = false, bool badDhSignature = false)
    {
        using var prekey = Key.Create(KeyAgreementAlgorithm.X25519);
        var prekeyBytes = prekey.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        var signature = SignatureAlgorithm.Ed25519.Sign(identity, prekeyBytes);
        if (badSignature)
        {
            signature[0] ^= 1;
        }

        using var identityDh = Key.Create(KeyAgreementAlgorithm.X25519);
        var dhBytes = identityDh.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        return new
        {
            identity_key = B64(identity.PublicKey.Export(KeyBlobFormat.RawPublicKey)),
            identity_dh = new { key = B64(dhBytes), signature = B64(SignatureAlgorithm.Ed25519.Sign(identity, [.. (badDhSignature ? "switchboard identity dx"u8 : "switchboard identity dh"u8), .. dhBytes])) },
            signed_prekey = new { id = 1, key = B64(prekeyBytes), signature = B64(signature) },
            one_time_prekeys = Enumerable.Range(oneTimeFrom, oneTimeCount).Select(i =>
            {
                using var k = Key.Create(KeyAgreementAlgorithm.X25519);
                return new { id = i, key = B64(k.PublicKey.Export(KeyBlobFormat.RawPublicKey)) };
            }).ToArray(),
        };
    }

    private static Key NewIdentity() => Key.Create(SignatureAlgorithm.Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });

    [Fact]
    public async Task Bundles_hand_out_each_one_time_prekey_once_then_the_signed_prekey_alone()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (_, phone) = await Server.LinkAsync(bobUser);
        var (_, laptop) = await Server.LinkAsync(bobUser);
        using var phoneIdentity = NewIdentity();
        using var laptopIdentity = NewIdentity();

        var (status, count) = await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", phone, Upload(phoneIdentity, 10, 2));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(2, count.GetProperty("one_time_prekeys").GetInt32());
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", laptop, Upload(laptopIdentity, 0, 0))).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", laptop, Upload(laptopIdentity, 0, 0, badSignature: true))).Status);
        using var stranger = NewIdentity();
        Assert.Equal(HttpStatusCode.BadRequest, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", laptop, Upload(stranger, 0, 0, badDhSignature: true))).Status);

        var handedOut = new List<int?>();
        for (var i = 0; i < 3; i++)
        {
            var (fetched, bundles) = await Server.CallAsync(HttpMethod.Get, $"/v1/users/{bobUser}/keys", alice.Token);
            Assert.Equal(HttpStatusCode.OK, fetched);
            Assert.Equal(2, bundles.GetArrayLength()); // one per device with keys
            var phoneBundle = bundles.EnumerateArray().Single(b => b.GetProperty("device").GetInt32() == 1);
            Assert.Equal(B64(phoneIdentity.PublicKey.Export(KeyBlobFormat.RawPublicKey)), phoneBundle.GetProperty("identity_key").GetString());
            Assert.Equal(32, Base64Url.DecodeFromChars(phoneBundle.GetProperty("identity_dh").GetProperty("key").GetString()).Length);
            handedOut.Add(phoneBundle.TryGetProperty("one_time_prekey", out var otp) ? otp.GetProperty("id").GetInt32() : null);
            Assert.False(bundles.EnumerateArray().Single(b => b.GetProperty("device").GetInt32() == 2).TryGetProperty("one_time_prekey", out _));
        }

        Assert.Equal([10, 11, null], handedOut); // each once, then the signed prekey alone
        Assert.Equal(0, (await Server.CallAsync(HttpMethod.Get, "/v1/devices/current/keys", phone)).Body.GetProperty("one_time_prekeys").GetInt32());
        Assert.Equal(HttpStatusCode.NotFound, (await Server.CallAsync(HttpMethod.Get, "/v1/users/nobody-here-0/keys", alice.Token)).Status);
    }

    [Fact]
    public async Task A_new_identity_key_is_a_system_event_in_every_conversation_of_its_user()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        using var first = NewIdentity();
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", bob.Token, Upload(first, 0, 1))).Status);
        var direct = Conv.Direct(alice.User, bob.User);
        await alice.SendAckedAsync(direct, "hi bob");
        var (created, group) = await Server.CallAsync(HttpMethod.Post, "/v1/groups", carol.Token, new { name = "three", members = new[] { alice.User, bob.User } });
        Assert.Equal(HttpStatusCode.Created, created);
        var groupConv = group.GetProperty("conv").GetString()!;
        var untouched = Conv.Direct(bob.User, carol.User); // no event yet: no notice either

        // The same identity again (more one-time prekeys): nothing to tell.
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", bob.Token, Upload(first, 1, 1))).Status);
        using var second = NewIdentity();
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", bob.Token, Upload(second, 2, 1))).Status);

        // One notice in each conversation, in whatever order the two arrive (on a cluster they may be on two shards).
        var notices = new Dictionary<string, JsonElement>();
        while (notices.Count < 2)
        {
            var notice = await alice.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "system" && f.GetProperty("system").GetProperty("op").GetString() == "identity_changed");
            notices[notice.GetProperty("conv").GetString()!] = notice;
        }

        Assert.Equal(new[] { direct, groupConv }.Order(), notices.Keys.Order());
        foreach (var notice in notices.Values)
        {
            Assert.Equal(bob.User, notice.GetProperty("from").GetString());
            Assert.Equal(bob.User, notice.GetProperty("system").GetProperty("users")[0].GetString());
            Assert.Equal(bob.Device, notice.GetProperty("system").GetProperty("device").GetInt32());
        }

        var (_, history) = await Server.GetAsync($"/v1/conversations/{direct}/messages", alice.Token);
        Assert.Single(history.GetProperty("messages").EnumerateArray(), m => m.GetProperty("kind").GetString() == "system");
        Assert.Equal(0, (await Server.GetAsync($"/v1/conversations/{untouched}/messages", carol.Token)).Body.GetProperty("messages").GetArrayLength());
    }

    [Fact]
    public async Task A_device_running_low_on_one_time_prekeys_is_told_on_its_socket()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        using var identity = NewIdentity();
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Put, "/v1/devices/current/keys", bob.Token, Upload(identity, 0, 2))).Status);
        Assert.Equal(HttpStatusCode.OK, (await Server.CallAsync(HttpMethod.Get, $"/v1/users/{bob.User}/keys", alice.Token)).Status);
        var low = await bob.ExpectAsync("keys_low");
        Assert.Equal(1, low.GetProperty("count").GetInt32());
    }

    [Fact]
    public async Task With_RequireE2ee_a_plaintext_body_is_forbidden_and_an_e2ee_payload_is_stored()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Messaging:RequireE2ee"] = "true" });
        var alice = await server.NewClientAsync();
        var bob = await server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bob);
        await alice.SendAsync(new { t = "send", cid = "plain", conv, kind = "text", body = "readable" });
        var error = await alice.ExpectAsync("error");
        Assert.Equal(("forbidden", "plain"), (error.GetProperty("code").GetString(), error.GetProperty("ref").GetString()));
        Assert.Equal(HttpStatusCode.Forbidden, (await server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "plain-http", kind = "text", body = "readable" })).Status);

        await alice.SendAsync(new { t = "send", cid = "sealed", conv, kind = "text", e2ee = new { v = 1, to = new[] { new { device = 1, ct = "AAAA" } } } });
        var ack = await alice.ExpectAsync("ack");
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task A_pairwise_encrypted_send_for_a_stale_device_set_is_devices_changed_with_the_current_list()
    {
        var alice = await Server.NewClientAsync();
        var bobUser = await Server.RegisterAsync();
        var (phone, _) = await Server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        object For(params (string User, int Device)[] devices) => new { v = 1, to = devices.Select(d => new { user = d.User, device = d.Device, ct = "AAAA" }).ToArray() };

        await alice.SendAsync(new { t = "send", cid = "e1", conv, kind = "text", e2ee = For((bobUser, phone)) });
        Assert.Equal(1, (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64());

        // Bob links a laptop: the same set is stale now.
        var (laptop, _) = await Server.LinkAsync(bobUser);
        await alice.SendAsync(new { t = "send", cid = "e2", conv, kind = "text", e2ee = For((bobUser, phone)) });
        var error = await alice.ExpectAsync("error");
        Assert.Equal(("devices_changed", "e2"), (error.GetProperty("code").GetString(), error.GetProperty("ref").GetString()));
        Assert.Equal(new[] { phone, laptop }, error.GetProperty("recipients").EnumerateArray().Where(r => r.GetProperty("user").GetString() == bobUser).Select(r => r.GetProperty("device").GetInt32()).Order());

        // The same cid, for every device: stored.
        await alice.SendAsync(new { t = "send", cid = "e2", conv, kind = "text", e2ee = For((bobUser, phone), (bobUser, laptop)) });
        Assert.Equal(2, (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64());

        // A resend of a stored cid gets its original ack, though its device set is stale by now.
        await alice.SendAsync(new { t = "send", cid = "e1", conv, kind = "text", e2ee = For((bobUser, phone)) });
        var dup = await alice.ExpectAsync("ack");
        Assert.Equal((1L, true), (dup.GetProperty("seq").GetInt64(), dup.GetProperty("dup").GetBoolean()));

        var (status, body) = await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "e3", kind = "text", e2ee = For((bobUser, phone)) });
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal("devices_changed", body.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Each_device_is_given_its_own_ciphertext_only_live_on_sync_on_replay_and_in_history()
    {
        var alice = await Server.NewClientAsync();
        var aliceTablet = await Server.NewDeviceAsync(alice.User);
        var bob = await Server.NewClientAsync();
        var bobLaptop = await Server.NewDeviceAsync(bob.User);
        var conv = Conv.Direct(alice.User, bob.User);
        var devices = new[] { (alice.User, aliceTablet.Device), (bob.User, bob.Device), (bob.User, bobLaptop.Device) };
        var e2ee = new { v = 1, to = devices.Select(d => new { user = d.Item1, device = d.Item2, ct = $"ct-{d.Item1}-{d.Item2}" }).ToArray() };
        await alice.SendAsync(new { t = "send", cid = "sealed", conv, kind = "text", e2ee });
        var seq = (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64();

        static string Only(JsonElement e2ee)
        {
            var to = e2ee.GetProperty("to");
            Assert.Equal(1, to.GetArrayLength()); // its own, none of the others'
            Assert.Equal(1, e2ee.GetProperty("v").GetInt32()); // the rest as sent
            return to[0].GetProperty("ct").GetString()!;
        }

        foreach (var reader in new[] { aliceTablet, bob, bobLaptop })
        {
            var live = await reader.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq);
            Assert.Equal($"ct-{reader.User}-{reader.Device}", Only(live.GetProperty("e2ee")));

            await reader.SendAsync(new { t = "sync", conv, after = seq - 1 });
            var synced = await reader.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq);
            Assert.Equal($"ct-{reader.User}-{reader.Device}", Only(synced.GetProperty("e2ee")));

            var (status, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", reader.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal($"ct-{reader.User}-{reader.Device}", Only(history.GetProperty("messages")[0].GetProperty("e2ee")));
        }

        // A device that was offline gets it on its reconnect's replay, its own only.
        var (phone, phoneToken) = await Server.LinkAsync(bob.User);
        var devicesNow = devices.Append((bob.User, phone)).ToArray();
        var second = new { v = 1, to = devicesNow.Select(d => new { user = d.Item1, device = d.Item2, ct = $"ct2-{d.Item1}-{d.Item2}" }).ToArray() };
        await alice.SendAsync(new { t = "send", cid = "sealed-2", conv, kind = "text", e2ee = second });
        var seq2 = (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64();
        var late = await TestClient.ConnectAsync(Server, bob.User, phone, phoneToken);
        var replayed = await late.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq2);
        Assert.Equal($"ct2-{bob.User}-{phone}", Only(replayed.GetProperty("e2ee")));

        // The sending device has no entry of its own: it keeps what it sent.
        var (_, own) = await Server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.All(own.GetProperty("messages").EnumerateArray(), m => Assert.Equal(0, m.GetProperty("e2ee").GetProperty("to").GetArrayLength()));
    }

    [Fact]
    public async Task A_sender_key_send_names_the_digest_of_the_current_devices_and_hands_out_its_keys_to_some()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        var (created, group) = await Server.CallAsync(HttpMethod.Post, "/v1/groups", alice.Token, new { name = "sealed", members = new[] { bob.User, carol.User } });
        Assert.Equal(HttpStatusCode.Created, created);
        var conv = group.GetProperty("conv").GetString()!;

        static string Digest(IEnumerable<(string User, int Device)> devices) =>
            Base64Url.EncodeToString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Concat(devices.Select(d => $"{d.User}:{d.Device}\n").Order(StringComparer.Ordinal)))));

        // Without the digest (or a wrong one): devices_changed, with the devices to make it for.
        await alice.SendAsync(new { t = "send", cid = "g1", conv, kind = "text", e2ee = new { v = 1, sk = "SK", devices = "nope" } });
        var error = await alice.ExpectAsync("error", f => f.GetProperty("ref").GetString() == "g1");
        Assert.Equal("devices_changed", error.GetProperty("code").GetString());
        var current = error.GetProperty("recipients").EnumerateArray().Select(r => (r.GetProperty("user").GetString()!, r.GetProperty("device").GetInt32())).ToList();
        Assert.Equal(new[] { (bob.User, bob.Device), (carol.User, carol.Device) }.Order(), current.Order());

        // A key handed to a device outside the group is refused too.
        await alice.SendAsync(new { t = "send", cid = "g1", conv, kind = "text", e2ee = new { v = 1, sk = "SK", devices = Digest(current), to = new[] { new { user = "mallory", device = 1, ct = "K" } } } });
        Assert.Equal("devices_changed", (await alice.ExpectAsync("error", f => f.GetProperty("ref").GetString() == "g1")).GetProperty("code").GetString());

        // Right: stored; each device gets the one Sender-Key ciphertext and its own key hand-out only.
        await alice.SendAsync(new { t = "send", cid = "g1", conv, kind = "text", e2ee = new { v = 1, sk = "SK", devices = Digest(current), to = new[] { new { user = bob.User, device = bob.Device, ct = "K-bob" } } } });
        var seq = (await alice.ExpectAsync("ack")).GetProperty("seq").GetInt64();
        var toBob = (await bob.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq)).GetProperty("e2ee");
        Assert.Equal(("SK", "K-bob"), (toBob.GetProperty("sk").GetString(), toBob.GetProperty("to")[0].GetProperty("ct").GetString()));
        var toCarol = (await carol.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq)).GetProperty("e2ee");
        Assert.Equal(("SK", 0), (toCarol.GetProperty("sk").GetString(), toCarol.GetProperty("to").GetArrayLength()));

        // Carol links a second device: the digest is stale.
        await Server.LinkAsync(carol.User);
        await alice.SendAsync(new { t = "send", cid = "g2", conv, kind = "text", e2ee = new { v = 1, sk = "SK", devices = Digest(current) } });
        var stale = await alice.ExpectAsync("error", f => f.GetProperty("ref").GetString() == "g2");
        Assert.Equal(("devices_changed", 3), (stale.GetProperty("code").GetString(), stale.GetProperty("recipients").GetArrayLength()));
    }
}

public sealed class KeyDirectoryTestsEmbedded(ServerFixture fixture) : KeyDirectoryTests(fixture), IClassFixture<ServerFixture>;

public sealed class KeyDirectoryTestsCluster(Cluster.ClusterNodeFixture fixture) : KeyDirectoryTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
