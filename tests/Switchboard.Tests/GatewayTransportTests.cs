using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;

namespace Switchboard.Tests;

/// <summary>
/// The gateway's own sockets: <c>GET /v1/ws</c> is sorted out from every other connection on the same port and
/// upgraded by the gateway; everything else is still Kestrel's.
/// </summary>
public sealed class GatewayTransportTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TestServer Server => fixture.Server;

    private async Task<(Socket Socket, string Head, byte[] After)> RequestAsync(string request)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Server.Address.Port));
        await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None);
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = Encoding.ASCII.GetString([.. received]);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                return (socket, text[..end], [.. received.Skip(end + 4)]);
            }

            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.True(n > 0, "closed before a response head");
            received.AddRange(buffer.AsSpan(0, n).ToArray());
        }
    }

    private static string Upgrade(string key, string version = "13", string path = "/v1/ws") =>
        $"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
        $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n";

    private static string NewKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));

    [Fact]
    public async Task A_plain_get_of_the_gateway_path_is_a_json_400()
    {
        using var response = await Server.Http.GetAsync("/v1/ws");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("invalid", body.GetProperty("error").GetString());

        // The next request on a new connection is served as usual: the gateway closed only its own.
        using var health = await Server.Http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task The_upgrade_answers_the_key_and_a_frame_sent_before_101_is_read()
    {
        var (device, token) = await Server.LinkAsync(await Server.RegisterAsync());
        var key = NewKey();
        // The hello goes out in the same write as the request, before the client has seen 101: the gateway
        // must read the head only, and leave the frame for the WebSocket.
        var hello = Encoding.UTF8.GetBytes($"{{\"t\":\"hello\",\"v\":1,\"token\":\"{token}\"}}");
        var frame = new byte[6 + hello.Length];
        frame[0] = 0x81;
        frame[1] = (byte)(0x80 | hello.Length);
        var mask = RandomNumberGenerator.GetBytes(4);
        mask.CopyTo(frame, 2);
        for (var i = 0; i < hello.Length; i++)
        {
            frame[6 + i] = (byte)(hello[i] ^ mask[i % 4]);
        }

        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Server.Address.Port));
        using (socket)
        {
            byte[] both = [.. Encoding.ASCII.GetBytes(Upgrade(key)), .. frame];
            await socket.SendAsync(both, SocketFlags.None);
            var received = new List<byte>();
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (!Encoding.UTF8.GetString([.. received]).Contains("\"t\":\"welcome\"", StringComparison.Ordinal))
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                Assert.True(n > 0, "closed before welcome");
                received.AddRange(buffer.AsSpan(0, n).ToArray());
            }

            var text = Encoding.UTF8.GetString([.. received]);
            Assert.StartsWith("HTTP/1.1 101 ", text, StringComparison.Ordinal);
#pragma warning disable CA5350 // the accept key is SHA-1 by RFC 6455
            var expected = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
            Assert.Contains($"Sec-WebSocket-Accept: {expected}\r\n", text, StringComparison.Ordinal);
            Assert.Contains($"\"device\":{device}", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Another_websocket_version_gets_426_naming_13()
    {
        var (socket, head, _) = await RequestAsync(Upgrade(NewKey(), version: "8"));
        using (socket)
        {
            Assert.StartsWith("HTTP/1.1 426 ", head, StringComparison.Ordinal);
            Assert.Contains("Sec-WebSocket-Version: 13", head, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_bad_key_or_a_missing_upgrade_header_is_400()
    {
        var (socket, head, _) = await RequestAsync(Upgrade("not-a-key"));
        using (socket)
        {
            Assert.StartsWith("HTTP/1.1 400 ", head, StringComparison.Ordinal);
        }

        (socket, head, _) = await RequestAsync("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nSec-WebSocket-Key: " + NewKey() + "\r\nSec-WebSocket-Version: 13\r\n\r\n");
        using (socket)
        {
            Assert.StartsWith("HTTP/1.1 400 ", head, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_oversized_request_head_is_431_and_loses_nothing_else()
    {
        var request = "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + new string('a', 9000) + "\r\n\r\n";
        var (socket, head, _) = await RequestAsync(request);
        using (socket)
        {
            Assert.StartsWith("HTTP/1.1 431 ", head, StringComparison.Ordinal);
        }

        var client = await Server.NewClientAsync();
        await client.SendAsync(new { t = "ping" });
        await client.ExpectAsync("pong");
    }

    [Fact]
    public async Task Paths_that_only_start_like_the_gateway_are_kestrels()
    {
        using var response = await Server.Http.GetAsync("/v1/wsx");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task With_own_sockets_off_kestrel_serves_the_same_protocol()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:OwnSockets"] = "false" });
        var alice = await server.NewClientAsync();
        var bob = await server.NewClientAsync();
        var conv = Protocol.Names.DirectConversation(alice.User, bob.User);
        await alice.SendAsync(new { t = "send", cid = "k1", conv, kind = "text", body = "through kestrel" });
        await alice.ExpectAsync("ack");
        Assert.Equal("through kestrel", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());

        using var plain = await server.Http.GetAsync("/v1/ws");
        Assert.Equal(HttpStatusCode.BadRequest, plain.StatusCode);
    }

    [Fact]
    public async Task A_head_that_arrives_in_pieces_is_put_together()
    {
        var key = NewKey();
        var request = Encoding.ASCII.GetBytes(Upgrade(key));
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Server.Address.Port));
        using (socket)
        {
            // "GET /v" first (not enough to tell the path), then the rest split inside the closing blank line.
            var cuts = new[] { 0, 6, request.Length - 3, request.Length };
            for (var i = 0; i < cuts.Length - 1; i++)
            {
                await socket.SendAsync(request.AsMemory(cuts[i], cuts[i + 1] - cuts[i]), SocketFlags.None);
                await Task.Delay(50);
            }

            var buffer = new byte[1024];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.StartsWith("HTTP/1.1 101 ", Encoding.ASCII.GetString(buffer, 0, n), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("GET /v1/ws HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade : websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\nHost: localhost\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: {0}\nSec-WebSocket-Version: 13\n\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: local\0host\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nX-Note: a\rb\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\nX-Name: caf\u007f\r\n\r\n")]
    [InlineData("GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUp(grade): websocket\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {0}\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    public async Task Malformed_upgrades_are_400(string template)
    {
        var (socket, head, _) = await RequestAsync(string.Format(System.Globalization.CultureInfo.InvariantCulture, template, NewKey()));
        using (socket)
        {
            Assert.StartsWith("HTTP/1.1 400 ", head, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_tls_endpoint_set_up_in_code_never_serves_a_plaintext_upgrade()
    {
        using var rsa = RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=localhost", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var selfSigned = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(selfSigned.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx), null);
        int tlsPort = 0, plainPort = 0;
        await using var server = await TestServer.StartAsync(configure: builder => builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(certificate));
            kestrel.Listen(IPAddress.Loopback, 0);
        }));
        foreach (var address in server.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features
                     .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses)
        {
            var uri = new Uri(address);
            _ = uri.Scheme == "https" ? tlsPort = uri.Port : plainPort = uri.Port;
        }

        Assert.NotEqual(0, tlsPort);
        Assert.NotEqual(0, plainPort);
        Assert.StartsWith("HTTP/1.1 101 ", await FirstBytesAsync(plainPort), StringComparison.Ordinal);
        Assert.DoesNotContain("HTTP/1.1 101", await FirstBytesAsync(tlsPort), StringComparison.Ordinal);

        static async Task<string> FirstBytesAsync(int port)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
            await socket.SendAsync(Encoding.ASCII.GetBytes(Upgrade(NewKey())), SocketFlags.None);
            var buffer = new byte[4096];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                return Encoding.Latin1.GetString(buffer, 0, n);
            }
            catch (SocketException)
            {
                return ""; // reset by the TLS layer
            }
        }
    }
}
