using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace Switchboard.Tests;

/// <summary>
/// Connections that have not authenticated are bounded, in all and per address, and so are hellos; Kestrel's
/// connection limits hold on the gateway's own sockets too.
/// </summary>
public sealed class AdmissionTests
{
    private static string Upgrade() =>
        "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        $"Sec-WebSocket-Key: {Convert.ToBase64String(RandomNumberGenerator.GetBytes(16))}\r\nSec-WebSocket-Version: 13\r\n\r\n";

    /// <summary>A socket from <paramref name="source"/> that upgrades and then never says hello; its answer's first line.</summary>
    private static async Task<(Socket Socket, string Answer)> StallAsync(TestServer server, string source)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Address.Port));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return (socket, "reset"); // refused at accept, before the connect was even reported
        }

        var buffer = new byte[1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(Upgrade()), SocketFlags.None); // a refused socket may be reset already
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            var text = Encoding.ASCII.GetString(buffer, 0, n);
            return (socket, n == 0 ? "closed" : text.Split("\r\n")[0]);
        }
        catch (SocketException)
        {
            return (socket, "reset");
        }
    }

    private static async Task<double> MetricAsync(TestServer server, string line)
    {
        var text = await server.Http.GetStringAsync("/metrics");
        var found = text.Split('\n').FirstOrDefault(l => l.StartsWith(line + " ", StringComparison.Ordinal));
        return found is null ? 0 : double.Parse(found[(line.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Sockets_that_never_say_hello_are_bounded_per_address_and_the_place_is_given_back()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Gateway:MaxUnauthenticatedPerAddress"] = "3",
            ["Switchboard:Gateway:HelloTimeoutSeconds"] = "60",
        });
        var stalled = new List<Socket>();
        for (var i = 0; i < 3; i++)
        {
            var (socket, answer) = await StallAsync(server, "127.0.0.2");
            Assert.StartsWith("HTTP/1.1 101", answer, StringComparison.Ordinal);
            stalled.Add(socket);
        }

        var (refused, refusal) = await StallAsync(server, "127.0.0.2");
        refused.Dispose();
        Assert.Contains(refusal, new[] { "closed", "reset" });
        Assert.Equal(1, await MetricAsync(server, "switchboard_gateway_refused_total{reason=\"unauthenticated_per_address\"}"));

        // Another address is not held back, and neither is a client that authenticates.
        var (other, otherAnswer) = await StallAsync(server, "127.0.0.3");
        other.Dispose();
        Assert.StartsWith("HTTP/1.1 101", otherAnswer, StringComparison.Ordinal);
        await using (var client = await server.NewClientAsync())
        {
            await client.SendAsync(new { t = "ping" });
            await client.ExpectAsync("pong");
        }

        // A stalled socket that goes gives its place back.
        stalled[0].Dispose();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await MetricAsync(server, "switchboard_gateway_unauthenticated") > 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        var (again, againAnswer) = await StallAsync(server, "127.0.0.2");
        Assert.StartsWith("HTTP/1.1 101", againAnswer, StringComparison.Ordinal);
        again.Dispose();
        stalled.ForEach(s => s.Dispose());
    }

    [Fact]
    public async Task Sockets_that_never_say_hello_are_bounded_in_all()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Gateway:MaxUnauthenticated"] = "2",
            ["Switchboard:Gateway:HelloTimeoutSeconds"] = "60",
        });
        var (first, a) = await StallAsync(server, "127.0.0.2");
        var (second, b) = await StallAsync(server, "127.0.0.3");
        var (third, c) = await StallAsync(server, "127.0.0.4");
        Assert.StartsWith("HTTP/1.1 101", a, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 101", b, StringComparison.Ordinal);
        Assert.Contains(c, new[] { "closed", "reset" });
        first.Dispose(); // (the bound holds HTTP connections too until their first request is sorted out)
        second.Dispose();
        third.Dispose();
        var metrics = server.Services.GetRequiredService<Switchboard.Server.Hosting.SwitchboardMetrics>();
        Assert.Equal(1, metrics.GatewayRefused.WithLabels("unauthenticated").Value);
    }

    [Fact]
    public async Task A_first_frame_over_the_hello_limit_closes_with_1009()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Switchboard:Gateway:MaxHelloBytes"] = "1024" });
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(server.WebSocketUri, CancellationToken.None);
        var big = Encoding.UTF8.GetBytes("{\"t\":\"hello\",\"v\":1,\"token\":\"" + new string('x', 2000) + "\"}");
        await socket.SendAsync(big, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[1024];
        while (socket.State == WebSocketState.Open)
        {
            var result = await socket.ReceiveAsync(buffer, timeout.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                break;
            }
        }

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, socket.CloseStatus);
    }

    [Fact]
    public async Task Kestrels_upgraded_connection_limit_holds_on_the_gateways_own_sockets()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?> { ["Kestrel:Limits:MaxConcurrentUpgradedConnections"] = "2" });
        var limits = server.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>>().Value.Limits;
        Assert.Equal(2, limits.MaxConcurrentUpgradedConnections);
        await using var one = await server.NewClientAsync();
        await using var two = await server.NewClientAsync();
        var (third, answer) = await StallAsync(server, "127.0.0.1");
        third.Dispose();
        Assert.StartsWith("HTTP/1.1 503", answer, StringComparison.Ordinal);
        Assert.Equal(1, await MetricAsync(server, "switchboard_gateway_refused_total{reason=\"max_upgraded\"}"));
    }
}
