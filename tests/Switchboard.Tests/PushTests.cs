using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Switchboard.Tests;

/// <summary>
/// Web Push to a device without a socket, against a push service on loopback that checks what a real one checks:
/// the VAPID token's ES256 signature and audience, and that the aes128gcm body decrypts with the subscription's keys.
/// </summary>
public sealed class PushTests
{
    /// <summary>A push service: keeps every request it gets; answers 201, or what <see cref="Answer"/> says.</summary>
    private sealed class FakePushService : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private FakePushService(WebApplication app, Uri address)
        {
            _app = app;
            Address = address;
        }

        public Uri Address { get; }

        public HttpStatusCode Answer { get; set; } = HttpStatusCode.Created;

        /// <summary>Answers to give first, before <see cref="Answer"/> (a 429 comes with <c>Retry-After: 1</c>).</summary>
        public ConcurrentQueue<HttpStatusCode> First { get; } = new();

        public ConcurrentQueue<(string Path, Dictionary<string, string> Headers, byte[] Body)> Received { get; } = new();

        public static async Task<FakePushService> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Logging.ClearProviders();
            var app = builder.Build();
            FakePushService? self = null;
            app.MapPost("/push/{id}", async (HttpContext context) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                self!.Received.Enqueue((context.Request.Path, context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase), body.ToArray()));
                var status = self.First.TryDequeue(out var first) ? first : self.Answer;
                if (status == HttpStatusCode.TooManyRequests)
                {
                    context.Response.Headers.RetryAfter = "1";
                }

                return Results.StatusCode((int)status);
            });
            await app.StartAsync();
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            return self = new FakePushService(app, address);
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }

    /// <summary>A browser's subscription: a P-256 key pair and an auth secret.</summary>
    private sealed class Subscriber : IDisposable
    {
        public ECDiffieHellman Key { get; } = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);

        public byte[] Auth { get; } = RandomNumberGenerator.GetBytes(16);

        public byte[] PublicKey
        {
            get
            {
                var q = Key.ExportParameters(false).Q;
                return [0x04, .. q.X!, .. q.Y!];
            }
        }

        /// <summary>RFC 8291: the aes128gcm body (RFC 8188 header, one record) decrypted with this subscription's keys.</summary>
        public byte[] Decrypt(byte[] body)
        {
            var salt = body.AsSpan(0, 16).ToArray();
            var idLength = body[20];
            var senderPublic = body.AsSpan(21, idLength).ToArray();
            var record = body.AsSpan(21 + idLength).ToArray();
            using var sender = ECDiffieHellman.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = senderPublic[1..33], Y = senderPublic[33..65] },
            });
            var shared = Key.DeriveRawSecretAgreement(sender.PublicKey);
            var keyInfo = Encoding.ASCII.GetBytes("WebPush: info\0").Concat(PublicKey).Concat(senderPublic).ToArray();
            var ikm = HKDF.DeriveKey(HashAlgorithmName.SHA256, shared, 32, Auth, keyInfo);
            var prk = HKDF.Extract(HashAlgorithmName.SHA256, ikm, salt);
            var cek = HKDF.Expand(HashAlgorithmName.SHA256, prk, 16, Encoding.ASCII.GetBytes("Content-Encoding: aes128gcm\0"));
            var nonce = HKDF.Expand(HashAlgorithmName.SHA256, prk, 12, Encoding.ASCII.GetBytes("Content-Encoding: nonce\0"));
            var plain = new byte[record.Length - 16];
            using (var aes = new AesGcm(cek, 16))
            {
                aes.Decrypt(nonce, record.AsSpan(0, record.Length - 16), record.AsSpan(record.Length - 16), plain);
            }

            var end = Array.LastIndexOf(plain, (byte)2); // the last record's padding delimiter
            return plain[..end];
        }

        public void Dispose() => Key.Dispose();
    }

    /// <summary>Checks the VAPID header (RFC 8292) as a push service does: the key is the server's, the token signed by it for this origin.</summary>
    private static void AssertVapid(Dictionary<string, string> headers, string serverKey, Uri service)
    {
        var authorization = headers["Authorization"];
        Assert.StartsWith("vapid ", authorization, StringComparison.Ordinal);
        var parts = authorization["vapid ".Length..].Split(',', StringSplitOptions.TrimEntries).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        Assert.Equal(serverKey, parts["k"]);
        var token = parts["t"].Split('.');
        var claims = JsonDocument.Parse(Base64Url.DecodeFromChars(token[1])).RootElement;
        Assert.Equal($"{service.Scheme}://{service.Authority}", claims.GetProperty("aud").GetString());
        Assert.True(claims.GetProperty("exp").GetInt64() > DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        var key = Base64Url.DecodeFromChars(serverKey);
        using var ecdsa = ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = key[1..33], Y = key[33..65] } });
        Assert.True(ecdsa.VerifyData(Encoding.ASCII.GetBytes(token[0] + "." + token[1]), Base64Url.DecodeFromChars(token[2]), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
    }

    [Fact]
    public async Task A_device_without_a_socket_gets_a_vapid_signed_encrypted_push_and_none_while_online()
    {
        await using var service = await FakePushService.StartAsync();
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Push:AllowPrivateEndpoints"] = "true",
            ["Switchboard:Push:CoalesceMilliseconds"] = "100",
        });
        var alice = await server.NewClientAsync();
        var bobUser = await server.RegisterAsync();
        var (_, bobToken) = await server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        using var subscriber = new Subscriber();

        var (status, vapid) = await server.CallAsync(HttpMethod.Get, "/v1/push/vapid", bobToken);
        Assert.Equal(HttpStatusCode.OK, status);
        var serverKey = vapid.GetProperty("publicKey").GetString()!;
        var registration = new { kind = "webpush", endpoint = new Uri(service.Address, "/push/bob").ToString(), keys = new { p256dh = Base64Url.EncodeToString(subscriber.PublicKey), auth = Base64Url.EncodeToString(subscriber.Auth) } };
        Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, registration)).Status);

        // Bob has no socket: a push comes, encrypted for his subscription, signed by the server.
        await alice.SendAckedAsync(conv, "are you there?");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (service.Received.IsEmpty)
        {
            Assert.True(DateTime.UtcNow < deadline, "no push arrived");
            await Task.Delay(20);
        }

        Assert.True(service.Received.TryDequeue(out var push));
        Assert.Equal("aes128gcm", push.Headers["Content-Encoding"]);
        AssertVapid(push.Headers, serverKey, service.Address);
        var payload = JsonDocument.Parse(subscriber.Decrypt(push.Body)).RootElement;
        Assert.Equal(conv, payload.GetProperty("conv").GetString());
        Assert.Equal(1, payload.GetProperty("seq").GetInt64());
        Assert.Equal(alice.User, payload.GetProperty("from").GetString());
        Assert.False(payload.TryGetProperty("body", out _)); // no text unless the operator allows it
        Assert.False(string.IsNullOrEmpty(push.Headers["Topic"])); // the conversation collapses its pushes

        // Where is it? For its sender: bob's device was pushed to, and has not fetched it yet.
        var journey = await JourneyAsync(server, alice.Token, conv, 1);
        var bobDevice = Assert.Single(journey.GetProperty("devices").EnumerateArray(), d => d.GetProperty("user").GetString() == bobUser);
        Assert.False(bobDevice.GetProperty("delivered").GetBoolean());
        Assert.Contains(bobDevice.GetProperty("steps").EnumerateArray(), step => step.GetProperty("what").GetString() == "pushed");

        // Bob online: nothing is pushed.
        var bob = await TestClient.ConnectAsync(server, bobUser, 1, bobToken);
        await bob.ExpectAsync("live");
        await alice.SendAckedAsync(conv, "good, you are here");
        await bob.ExpectAsync("msg", m => m.GetProperty("seq").GetInt64() == 2);
        await Task.Delay(500); // five coalescing periods
        Assert.True(service.Received.IsEmpty);
        journey = await JourneyAsync(server, bobToken, conv, 2); // a recipient sees their own devices
        var online = Assert.Single(journey.GetProperty("devices").EnumerateArray());
        Assert.Equal("online: delivered on its socket", Assert.Single(online.GetProperty("steps").EnumerateArray()).GetProperty("detail").GetString());
        var stranger = await server.NewClientAsync();
        Assert.Equal(HttpStatusCode.Forbidden, (await server.CallAsync(HttpMethod.Get, $"/v1/conversations/{conv}/messages/2/journey", stranger.Token)).Status);

        // Offline again, and the service says the subscription is gone: the registration is removed.
        await bob.CloseAsync();
        service.Answer = HttpStatusCode.Gone;
        await Task.Delay(200); // the socket's end reaches the server
        await alice.SendAckedAsync(conv, "bye");
        deadline = DateTime.UtcNow.AddSeconds(10);
        while (!(await server.Http.GetStringAsync("/metrics")).Contains("result=\"gone\"", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, "the gone subscription was not dropped");
            await Task.Delay(50);
        }

        var store = server.Services.GetRequiredService<Switchboard.Server.Accounts.IAccountStore>();
        Assert.Null(await store.GetPushAsync(bobUser, 1));
        journey = await JourneyAsync(server, alice.Token, conv, 3);
        Assert.Contains(journey.GetProperty("devices").EnumerateArray().SelectMany(d => d.GetProperty("steps").EnumerateArray()), step => step.GetProperty("what").GetString() == "push refused");
    }

    private static async Task<JsonElement> JourneyAsync(TestServer server, string token, string conv, long seq)
    {
        var (status, journey) = await server.CallAsync(HttpMethod.Get, $"/v1/conversations/{conv}/messages/{seq}/journey", token);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(seq, journey.GetProperty("seq").GetInt64());
        return journey;
    }

    [Fact]
    public async Task Registrations_are_checked_and_private_endpoints_refused_by_default()
    {
        await using var server = await TestServer.StartAsync();
        var alice = await server.NewClientAsync();
        var keys = new { p256dh = Base64Url.EncodeToString([0x04, .. new byte[64]]), auth = Base64Url.EncodeToString(new byte[16]) };
        async Task<HttpStatusCode> RegisterAsync(object body) => (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", alice.Token, body)).Status;
        Assert.Equal(HttpStatusCode.BadRequest, await RegisterAsync(new { kind = "webpush", endpoint = "https://127.0.0.1/push", keys }));
        Assert.Equal(HttpStatusCode.BadRequest, await RegisterAsync(new { kind = "webpush", endpoint = "http://push.example/x", keys }));
        Assert.Equal(HttpStatusCode.BadRequest, await RegisterAsync(new { kind = "webpush", endpoint = "https://push.example/x", keys = new { p256dh = "abc", auth = "x" } }));
        Assert.Equal(HttpStatusCode.BadRequest, await RegisterAsync(new { kind = "carrier-pigeon" }));
        Assert.Equal(HttpStatusCode.NoContent, await RegisterAsync(new { kind = "webpush", endpoint = "https://push.example/x", keys }));
        Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Delete, "/v1/devices/current/push", alice.Token)).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", "nope", new { kind = "webpush" })).Status);
    }

    [Fact]
    public async Task An_android_device_gets_an_fcm_data_message_after_the_oauth_exchange_and_a_stale_token_is_dropped()
    {
        using var rsa = RSA.Create(2048);
        var tokenRequests = 0;
        var sends = new ConcurrentQueue<(string Authorization, JsonElement Message)>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var fake = builder.Build();
        string? tokenUri = null;
        fake.MapPost("/token", async (HttpContext context) =>
        {
            var form = await context.Request.ReadFormAsync();
            Assert.Equal("urn:ietf:params:oauth:grant-type:jwt-bearer", form["grant_type"].ToString());
            var jwt = form["assertion"].ToString().Split('.');
            Assert.True(rsa.VerifyData(Encoding.ASCII.GetBytes(jwt[0] + "." + jwt[1]), Base64Url.DecodeFromChars(jwt[2]), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
            var claims = JsonDocument.Parse(Base64Url.DecodeFromChars(jwt[1])).RootElement;
            Assert.Equal(tokenUri, claims.GetProperty("aud").GetString());
            Assert.Equal("https://www.googleapis.com/auth/firebase.messaging", claims.GetProperty("scope").GetString());
            Interlocked.Increment(ref tokenRequests);
            return Results.Json(new { access_token = "tok-1", expires_in = 3600, token_type = "Bearer" });
        });
        fake.MapPost("/v1/projects/demo/messages:send", async (HttpContext context) =>
        {
            var message = (await JsonDocument.ParseAsync(context.Request.Body)).RootElement.GetProperty("message").Clone();
            sends.Enqueue((context.Request.Headers.Authorization.ToString(), message));
            return message.GetProperty("token").GetString() == "stale"
                ? Results.Json(new { error = new { code = 404, status = "NOT_FOUND", details = new[] { new { errorCode = "UNREGISTERED" } } } }, statusCode: 404)
                : Results.Json(new { name = "projects/demo/messages/1" });
        });
        await fake.StartAsync();
        var baseUrl = fake.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        tokenUri = baseUrl + "/token";
        var accountFile = Path.Combine(Path.GetTempPath(), "switchboard-fcm-" + Guid.NewGuid().ToString("N") + ".json");
        await File.WriteAllTextAsync(accountFile, JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["type"] = "service_account", ["project_id"] = "demo", ["client_email"] = "switchboard@demo.iam.gserviceaccount.com",
            ["private_key"] = rsa.ExportPkcs8PrivateKeyPem(), ["token_uri"] = tokenUri,
        }));
        try
        {
            await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
            {
                ["Switchboard:Push:Fcm:ServiceAccountFile"] = accountFile,
                ["Switchboard:Push:Fcm:BaseUrl"] = baseUrl,
                ["Switchboard:Push:CoalesceMilliseconds"] = "100",
            });
            var alice = await server.NewClientAsync();
            var bobUser = await server.RegisterAsync();
            var (_, bobToken) = await server.LinkAsync(bobUser);
            var conv = Conv.Direct(alice.User, bobUser);
            Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, new { kind = "fcm", token = "device-token-1" })).Status);

            for (var i = 1; i <= 2; i++)
            {
                await alice.SendAckedAsync(conv, $"message {i}");
                var deadline = DateTime.UtcNow.AddSeconds(10);
                while (sends.Count < i)
                {
                    Assert.True(DateTime.UtcNow < deadline, $"push {i} never came");
                    await Task.Delay(20);
                }
            }

            Assert.Equal(1, tokenRequests); // the access token is kept until it expires
            foreach (var (authorization, message) in sends)
            {
                Assert.Equal("Bearer tok-1", authorization);
                Assert.Equal("device-token-1", message.GetProperty("token").GetString());
                Assert.Equal(conv, message.GetProperty("data").GetProperty("conv").GetString());
                Assert.False(string.IsNullOrEmpty(message.GetProperty("android").GetProperty("collapse_key").GetString()));
                Assert.False(message.GetProperty("data").TryGetProperty("body", out _));
            }

            Assert.Equal(["1", "2"], sends.Select(s => s.Message.GetProperty("data").GetProperty("seq").GetString()));

            // A token FCM no longer knows: the registration is removed.
            Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, new { kind = "fcm", token = "stale" })).Status);
            await alice.SendAckedAsync(conv, "message 3");
            var store = server.Services.GetRequiredService<Switchboard.Server.Accounts.IAccountStore>();
            var until = DateTime.UtcNow.AddSeconds(10);
            while (await store.GetPushAsync(bobUser, 1) is not null)
            {
                Assert.True(DateTime.UtcNow < until, "the stale registration was kept");
                await Task.Delay(20);
            }
        }
        finally
        {
            await fake.DisposeAsync();
            File.Delete(accountFile);
        }
    }

    [Fact]
    public async Task An_ios_device_gets_an_apns_alert_over_http2_with_an_es256_provider_token_and_a_gone_token_is_dropped()
    {
        using var signing = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var received = new ConcurrentQueue<(string Protocol, string Path, Dictionary<string, string> Headers, JsonElement Body)>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2));
        builder.Logging.ClearProviders();
        var apple = builder.Build();
        apple.MapPost("/3/device/{token}", async (HttpContext context, string token) =>
        {
            var body = (await JsonDocument.ParseAsync(context.Request.Body)).RootElement.Clone();
            received.Enqueue((context.Request.Protocol, context.Request.Path, context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase), body));
            return token == "0ff1ce" ? Results.Json(new { reason = "Unregistered" }, statusCode: 410) : Results.Ok();
        });
        await apple.StartAsync();
        var baseUrl = apple.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var keyFile = Path.Combine(Path.GetTempPath(), "switchboard-apns-" + Guid.NewGuid().ToString("N") + ".p8");
        await File.WriteAllTextAsync(keyFile, signing.ExportPkcs8PrivateKeyPem());
        try
        {
            await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
            {
                ["Switchboard:Push:Apns:KeyFile"] = keyFile,
                ["Switchboard:Push:Apns:KeyId"] = "ABC123DEFG",
                ["Switchboard:Push:Apns:TeamId"] = "TEAM123456",
                ["Switchboard:Push:Apns:SandboxBaseUrl"] = baseUrl,
                ["Switchboard:Push:CoalesceMilliseconds"] = "100",
            });
            var alice = await server.NewClientAsync();
            var bobUser = await server.RegisterAsync();
            var (_, bobToken) = await server.LinkAsync(bobUser);
            var conv = Conv.Direct(alice.User, bobUser);
            Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, new { kind = "apns", token = "a1b2c3d4", topic = "chat.switchboard.app", sandbox = true })).Status);
            await alice.SendAckedAsync(conv, "for your phone");
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (received.IsEmpty)
            {
                Assert.True(DateTime.UtcNow < deadline, "no APNs request came");
                await Task.Delay(20);
            }

            Assert.True(received.TryDequeue(out var push));
            Assert.Equal("HTTP/2", push.Protocol);
            Assert.Equal("/3/device/a1b2c3d4", push.Path);
            Assert.Equal("chat.switchboard.app", push.Headers["apns-topic"]);
            Assert.Equal("alert", push.Headers["apns-push-type"]);
            Assert.False(string.IsNullOrEmpty(push.Headers["apns-collapse-id"]));
            var jwt = push.Headers["authorization"]["bearer ".Length..].Split('.');
            var header = JsonDocument.Parse(Base64Url.DecodeFromChars(jwt[0])).RootElement;
            Assert.Equal(("ES256", "ABC123DEFG"), (header.GetProperty("alg").GetString(), header.GetProperty("kid").GetString()));
            Assert.Equal("TEAM123456", JsonDocument.Parse(Base64Url.DecodeFromChars(jwt[1])).RootElement.GetProperty("iss").GetString());
            Assert.True(signing.VerifyData(Encoding.ASCII.GetBytes(jwt[0] + "." + jwt[1]), Base64Url.DecodeFromChars(jwt[2]), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
            Assert.Equal(conv, push.Body.GetProperty("conv").GetString());
            Assert.Equal(1, push.Body.GetProperty("aps").GetProperty("badge").GetInt64());
            Assert.Equal("New message", push.Body.GetProperty("aps").GetProperty("alert").GetProperty("body").GetString()); // no text

            // A device token Apple no longer knows (410): the registration is removed.
            Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, new { kind = "apns", token = "0ff1ce", topic = "chat.switchboard.app", sandbox = true })).Status);
            await alice.SendAckedAsync(conv, "again");
            var store = server.Services.GetRequiredService<Switchboard.Server.Accounts.IAccountStore>();
            deadline = DateTime.UtcNow.AddSeconds(10);
            while (await store.GetPushAsync(bobUser, 1) is not null)
            {
                Assert.True(DateTime.UtcNow < deadline, "the unregistered token was kept");
                await Task.Delay(20);
            }
        }
        finally
        {
            await apple.DisposeAsync();
            File.Delete(keyFile);
        }
    }

    [Fact]
    public async Task A_burst_is_one_push_a_muted_conversation_none_and_a_429_is_tried_again_after_its_wait()
    {
        await using var service = await FakePushService.StartAsync();
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Push:AllowPrivateEndpoints"] = "true",
            ["Switchboard:Push:CoalesceMilliseconds"] = "300",
        });
        var alice = await server.NewClientAsync();
        var bobUser = await server.RegisterAsync();
        var (_, bobToken) = await server.LinkAsync(bobUser);
        var conv = Conv.Direct(alice.User, bobUser);
        using var subscriber = new Subscriber();
        var registration = new { kind = "webpush", endpoint = new Uri(service.Address, "/push/bob").ToString(), keys = new { p256dh = Base64Url.EncodeToString(subscriber.PublicKey), auth = Base64Url.EncodeToString(subscriber.Auth) } };
        Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, "/v1/devices/current/push", bobToken, registration)).Status);

        // Two messages inside the coalescing wait: one push, for the newer; the service first says 429.
        service.First.Enqueue(HttpStatusCode.TooManyRequests);
        await alice.SendAckedAsync(conv, "one");
        await alice.SendAckedAsync(conv, "two");
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (service.Received.Count < 2)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{service.Received.Count} push request(s), not the 429 and its retry");
            await Task.Delay(20);
        }

        var requests = service.Received.ToArray();
        Assert.All(requests, r => Assert.Equal(2, JsonDocument.Parse(subscriber.Decrypt(r.Body)).RootElement.GetProperty("seq").GetInt64()));
        var (_, first) = await server.CallAsync(HttpMethod.Get, $"/v1/conversations/{conv}/messages/1/journey", alice.Token);
        Assert.Contains(first.GetProperty("devices").EnumerateArray().SelectMany(d => d.GetProperty("steps").EnumerateArray()), s => s.GetProperty("what").GetString() == "collapsed");

        // Muted: nothing.
        Assert.Equal(HttpStatusCode.NoContent, (await server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", bobToken)).Status);
        while (service.Received.TryDequeue(out _))
        {
        }

        await alice.SendAckedAsync(conv, "three");
        JsonElement third;
        deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            (_, third) = await server.CallAsync(HttpMethod.Get, $"/v1/conversations/{conv}/messages/3/journey", alice.Token);
            if (third.GetProperty("devices").EnumerateArray().SelectMany(d => d.GetProperty("steps").EnumerateArray()).Any(s => s.GetProperty("detail").GetString() == "muted"))
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "the muted conversation was not skipped");
            await Task.Delay(20);
        }

        await Task.Delay(600); // two coalescing waits
        Assert.True(service.Received.IsEmpty);
    }
}
