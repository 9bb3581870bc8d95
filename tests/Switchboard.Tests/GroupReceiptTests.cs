using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Run on the embedded server and on a node of a cluster (<see cref="GroupReceiptTestsEmbedded"/>, <see cref="GroupReceiptTestsCluster"/>).</summary>
public abstract class GroupReceiptTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private async Task<string> CreateAsync(TestClient creator, params string[] members)
    {
        using var request = Server.Request(HttpMethod.Post, "/v1/groups", creator.Token);
        request.Content = JsonContent.Create(new { name = "receipts", members });
        using var response = await Server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("conv").GetString()!;
    }

    private static List<JsonElement> Receipts(IEnumerable<JsonElement> frames) =>
        frames.Where(f => f.GetProperty("t").GetString() == "receipt").ToList();

    [Fact]
    public async Task The_author_gets_one_aggregated_receipt_when_the_last_member_gets_there()
    {
        var alice = await Server.NewClientAsync();
        var others = new List<TestClient>();
        for (var i = 0; i < 12; i++)
        {
            others.Add(await Server.NewClientAsync());
        }

        var conv = await CreateAsync(alice, [.. others.Select(o => o.User)]);
        var ack = await alice.SendAckedAsync(conv, "hello group");
        var seq = ack.GetProperty("seq").GetInt64();
        Assert.Equal(2, seq);

        // All but one member receive it: no receipt yet.
        foreach (var other in others.Take(11))
        {
            await other.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq);
            await other.SendAsync(new { t = "recv", conv, seq });
        }

        await Task.Delay(300);
        Assert.Empty(Receipts(await alice.DrainAsync()));

        await others[11].SendAsync(new { t = "recv", conv, seq });
        var delivered = await alice.ExpectAsync("receipt");
        Assert.Equal("*", delivered.GetProperty("user").GetString());
        Assert.Equal("delivered", delivered.GetProperty("kind").GetString());
        Assert.Equal(seq, delivered.GetProperty("seq").GetInt64());
        Assert.Empty(Receipts(await alice.DrainAsync())); // exactly one, not one per member

        foreach (var other in others)
        {
            await other.SendAsync(new { t = "read", conv, seq });
        }

        var read = await alice.ExpectAsync("receipt");
        Assert.Equal("*", read.GetProperty("user").GetString());
        Assert.Equal("read", read.GetProperty("kind").GetString());
        Assert.Equal(seq, read.GetProperty("seq").GetInt64());
        Assert.Empty(Receipts(await alice.DrainAsync()));

        // Members never get each other's receipts: that would be the storm.
        Assert.Empty(Receipts(await others[0].DrainAsync()));

        // Message info still has the per-member detail.
        var (_, rows) = await Server.GetAsync($"/v1/conversations/{conv}/receipts?seq={seq}", alice.Token);
        Assert.Equal(13, rows.GetArrayLength());
        Assert.All(rows.EnumerateArray().Where(r => r.GetProperty("user").GetString() != alice.User), r => Assert.True(r.GetProperty("read").GetInt64() >= seq));
    }

    [Fact]
    public async Task Removing_the_member_who_held_it_back_advances_the_aggregate()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, bob.User, carol.User);
        var seq = (await alice.SendAckedAsync(conv, "carol is away")).GetProperty("seq").GetInt64();
        await bob.ExpectAsync("msg", f => f.GetProperty("seq").GetInt64() == seq);
        await bob.SendAsync(new { t = "recv", conv, seq });
        await Task.Delay(200);
        Assert.Empty(Receipts(await alice.DrainAsync()));

        using var request = Server.Request(HttpMethod.Delete, $"/v1/groups/{conv}/members/{carol.User}", alice.Token);
        using var response = await Server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        var receipt = await alice.ExpectAsync("receipt");
        Assert.Equal("*", receipt.GetProperty("user").GetString());
        Assert.Equal(seq, receipt.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task An_author_who_was_away_gets_the_aggregated_state_before_live()
    {
        var aliceUser = await Server.RegisterAsync();
        var (device, token) = await Server.LinkAsync(aliceUser);
        var alice = await TestClient.ConnectAsync(Server, aliceUser, device, token);
        await alice.ExpectAsync("live");
        var bob = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, bob.User);
        var seq = (await alice.SendAckedAsync(conv, "read while I'm away")).GetProperty("seq").GetInt64();
        await alice.CloseAsync();
        await Task.Delay(50);
        await bob.SendAsync(new { t = "read", conv, seq });
        await bob.SendAsync(new { t = "ping" });
        await bob.ExpectAsync("pong");
        await Task.Delay(100);

        var back = await TestClient.ConnectAsync(Server, aliceUser, device, token);
        var before = await back.UntilLiveAsync();

        Assert.Contains(before, f => f.GetProperty("t").GetString() == "receipt" && f.GetProperty("user").GetString() == "*" && f.GetProperty("kind").GetString() == "read" && f.GetProperty("seq").GetInt64() == seq);
    }

    [Fact]
    public async Task A_read_in_a_group_reaches_the_readers_other_devices()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var bob2 = await Server.NewDeviceAsync(bob.User);
        var conv = await CreateAsync(alice, bob.User);
        var seq = (await alice.SendAckedAsync(conv, "read me")).GetProperty("seq").GetInt64();
        await bob.SendAsync(new { t = "read", conv, seq });
        var own = await bob2.ExpectAsync("receipt");
        Assert.Equal(bob.User, own.GetProperty("user").GetString());
        Assert.Equal("read", own.GetProperty("kind").GetString());
        var aggregate = await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "read");
        Assert.Equal("*", aggregate.GetProperty("user").GetString());
    }
}

public sealed class GroupReceiptTestsEmbedded(ServerFixture fixture) : GroupReceiptTests(fixture), IClassFixture<ServerFixture>;

public sealed class GroupReceiptTestsCluster(Cluster.ClusterNodeFixture fixture) : GroupReceiptTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
