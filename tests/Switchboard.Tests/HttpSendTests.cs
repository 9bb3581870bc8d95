using System.Net;

namespace Switchboard.Tests;

/// <summary><c>POST /v1/conversations/{conv}/messages</c>: a send without a socket, with the socket's promises.</summary>
/// <summary>Run on the embedded server and on a node of a cluster (<see cref="HttpSendTestsEmbedded"/>, <see cref="HttpSendTestsCluster"/>).</summary>
public abstract class HttpSendTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    [Fact]
    public async Task A_send_over_http_is_durable_idempotent_delivered_and_leaves_the_devices_socket_alone()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);

        // With alice's own device token: her open socket must stay open (a second socket would replace it).
        var (status, ack) = await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "http-1", kind = "text", body = "from a script" });
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("ack", ack.GetProperty("t").GetString());
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());
        Assert.False(ack.GetProperty("dup").GetBoolean());

        // Durable before 201: it is in the history; the receiver gets it, and so does the sending device's socket.
        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", bob.Token);
        Assert.Equal("from a script", Assert.Single(history.GetProperty("messages").EnumerateArray()).GetProperty("body").GetString());
        Assert.Equal("from a script", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
        Assert.Equal("from a script", (await alice.ExpectAsync("msg")).GetProperty("body").GetString());
        Assert.False(alice.Closed.IsCompleted);

        // The same cid again: the original ack, nothing stored twice.
        var (again, dup) = await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "http-1", kind = "text", body = "from a script" });
        Assert.Equal(HttpStatusCode.Created, again);
        Assert.True(dup.GetProperty("dup").GetBoolean());
        Assert.Equal(1, dup.GetProperty("seq").GetInt64());

        // The socket of the same device still works.
        var socketAck = await alice.SendAckedAsync(conv, "and from the app");
        Assert.Equal(2, socketAck.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task A_bad_send_over_http_is_refused_with_the_sockets_codes()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.RegisterAsync();
        var carol = await Server.RegisterAsync();
        var conv = Conv.Direct(alice.User, bob);
        Assert.Equal(HttpStatusCode.BadRequest, (await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { kind = "text", body = "no cid" })).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "k", kind = "sticker", body = "x" })).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{Conv.Direct(bob, carol)}/messages", alice.Token, new { cid = "f", kind = "text", body = "not mine" })).Status);
        var (tooLarge, body) = await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", alice.Token, new { cid = "big", kind = "text", body = new string('x', 70_000) });
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge);
        Assert.Equal("too_large", body.GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.Unauthorized, (await Server.CallAsync(HttpMethod.Post, $"/v1/conversations/{conv}/messages", "not-a-token", new { cid = "u", kind = "text", body = "x" })).Status);
    }
}

public sealed class HttpSendTestsEmbedded(ServerFixture fixture) : HttpSendTests(fixture), IClassFixture<ServerFixture>;

public sealed class HttpSendTestsCluster(Cluster.ClusterNodeFixture fixture) : HttpSendTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
