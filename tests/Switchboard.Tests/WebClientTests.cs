using System.Net;
using System.Net.WebSockets;

namespace Switchboard.Tests;

/// <summary>The browser client's files at <c>/</c>, under a strict policy, and the origin check of the API on both gateway paths.</summary>
public sealed class WebClientTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TestServer Server => fixture.Server;

    [Fact]
    public async Task The_page_is_served_at_the_root_with_a_strict_content_security_policy()
    {
        using var response = await Server.Http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        var policy = string.Join(";", response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("script-src 'self'", policy);
        Assert.Contains("frame-ancestors 'none'", policy);
        Assert.DoesNotContain("unsafe-inline", policy);
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        var html = await response.Content.ReadAsStringAsync();
        Assert.Contains("<script type=\"module\" src=\"app.js\">", html);
        Assert.DoesNotContain("<script>", html); // no inline script: the policy would refuse it

        using var script = await Server.Http.GetAsync("/app.js");
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        Assert.Contains("javascript", script.Content.Headers.ContentType?.MediaType);
        Assert.DoesNotContain("innerHTML", await script.Content.ReadAsStringAsync()); // what users write is text, never markup
    }

    private async Task<HttpStatusCode> CallFromAsync(TestServer server, string? origin)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/conversations");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "no-such-token");
        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }

        using var response = await server.Http.SendAsync(request);
        return response.StatusCode;
    }

    private static async Task<bool> UpgradesFromAsync(TestServer server, string? origin)
    {
        using var socket = new ClientWebSocket();
        if (origin is not null)
        {
            socket.Options.SetRequestHeader("Origin", origin);
        }

        try
        {
            await socket.ConnectAsync(server.WebSocketUri, CancellationToken.None);
            return true;
        }
        catch (WebSocketException)
        {
            return false;
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Pages_of_other_origins_are_refused_on_the_api_and_the_websocket_unless_allowed(bool ownSockets)
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Gateway:OwnSockets"] = ownSockets ? "true" : "false",
            ["Switchboard:Web:AllowedOrigins:0"] = "https://chat.example.com",
        });
        var own = $"http://{server.Address.Authority}";

        // Not a page (no Origin), the server's own pages, and the allowed origin get through (401: the token is bad).
        Assert.Equal(HttpStatusCode.Unauthorized, await CallFromAsync(server, null));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallFromAsync(server, own));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallFromAsync(server, "https://chat.example.com"));
        Assert.True(await UpgradesFromAsync(server, null));
        Assert.True(await UpgradesFromAsync(server, own));
        Assert.True(await UpgradesFromAsync(server, "https://chat.example.com"));

        // Another page: refused before anything else.
        Assert.Equal(HttpStatusCode.Forbidden, await CallFromAsync(server, "https://evil.example.net"));
        Assert.Equal(HttpStatusCode.Forbidden, await CallFromAsync(server, "null"));
        Assert.Equal(HttpStatusCode.Forbidden, await CallFromAsync(server, $"http://{server.Address.Host}:1")); // same host, another port
        Assert.False(await UpgradesFromAsync(server, "https://evil.example.net"));
    }
}
