using System.Buffers.Text;
using System.Net;
using NSec.Cryptography;

namespace Switchboard.Tests;

/// <summary>The key directory: public keys per device, one-time prekeys handed out once; and RequireE2ee.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class KeyDirectoryTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private static string B64(ReadOnlySpan<byte> bytes) => Base64Url.EncodeToString(bytes);

    /// <summary>A device's keys as a client makes them: an Ed25519 identity signing an X25519 prekey.</summary>
    private static object Upload(Key identity, int oneTimeFrom, int oneTimeCount, bool badSignature = false)
    {
        using var prekey = Key.Create(KeyAgreementAlgorithm.X25519);
        var prekeyBytes = prekey.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        var signature = SignatureAlgorithm.Ed25519.Sign(identity, prekeyBytes);
        if (badSignature)
        {
            signature[0] ^= 1;
        }

        return new
        {
            identity_key = B64(identity.PublicKey.Export(KeyBlobFormat.RawPublicKey)),
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

        var handedOut = new List<int?>();
        for (var i = 0; i < 3; i++)
        {
            var (fetched, bundles) = await Server.CallAsync(HttpMethod.Get, $"/v1/users/{bobUser}/keys", alice.Token);
            Assert.Equal(HttpStatusCode.OK, fetched);
            Assert.Equal(2, bundles.GetArrayLength()); // one per device with keys
            var phoneBundle = bundles.EnumerateArray().Single(b => b.GetProperty("device").GetInt32() == 1);
            Assert.Equal(B64(phoneIdentity.PublicKey.Export(KeyBlobFormat.RawPublicKey)), phoneBundle.GetProperty("identity_key").GetString());
            handedOut.Add(phoneBundle.TryGetProperty("one_time_prekey", out var otp) ? otp.GetProperty("id").GetInt32() : null);
            Assert.False(bundles.EnumerateArray().Single(b => b.GetProperty("device").GetInt32() == 2).TryGetProperty("one_time_prekey", out _));
        }

        Assert.Equal([10, 11, null], handedOut); // each once, then the signed prekey alone
        Assert.Equal(0, (await Server.CallAsync(HttpMethod.Get, "/v1/devices/current/keys", phone)).Body.GetProperty("one_time_prekeys").GetInt32());
        Assert.Equal(HttpStatusCode.NotFound, (await Server.CallAsync(HttpMethod.Get, "/v1/users/nobody-here-0/keys", alice.Token)).Status);
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
}

public sealed class KeyDirectoryTestsEmbedded(ServerFixture fixture) : KeyDirectoryTests(fixture), IClassFixture<ServerFixture>;

public sealed class KeyDirectoryTestsCluster(Cluster.ClusterNodeFixture fixture) : KeyDirectoryTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
