using System.Net;

namespace Switchboard.Tests;

/// <summary><c>PUT|DELETE /v1/conversations/{conv}/mute</c>: per user, until a time or until unmuted.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class MuteTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private async Task<long?> MutedUntilAsync(TestClient client, string conv)
    {
        var (_, list) = await Server.GetAsync("/v1/conversations", client.Token);
        var row = list.EnumerateArray().Single(c => c.GetProperty("conv").GetString() == conv);
        return row.TryGetProperty("muted_until", out var until) ? until.GetInt64() : null;
    }

    [Fact]
    public async Task A_conversation_is_muted_until_a_time_or_until_unmuted_for_its_user_only()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);
        await alice.SendAckedAsync(conv, "hi");

        Assert.Equal(HttpStatusCode.NoContent, (await Server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", alice.Token)).Status);
        Assert.Equal(long.MaxValue, await MutedUntilAsync(alice, conv));
        Assert.Null(await MutedUntilAsync(bob, conv)); // bob's is his own

        var hour = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        Assert.Equal(HttpStatusCode.NoContent, (await Server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", alice.Token, new { until = hour })).Status);
        Assert.Equal(hour, await MutedUntilAsync(alice, conv));

        var past = DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds();
        Assert.Equal(HttpStatusCode.NoContent, (await Server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", alice.Token, new { until = past })).Status);
        Assert.Null(await MutedUntilAsync(alice, conv)); // over already

        Assert.Equal(HttpStatusCode.NoContent, (await Server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", alice.Token)).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await Server.CallAsync(HttpMethod.Delete, $"/v1/conversations/{conv}/mute", alice.Token)).Status);
        Assert.Null(await MutedUntilAsync(alice, conv));

        var stranger = await Server.NewClientAsync();
        Assert.Equal(HttpStatusCode.Forbidden, (await Server.CallAsync(HttpMethod.Put, $"/v1/conversations/{conv}/mute", stranger.Token)).Status);
    }
}

public sealed class MuteTestsEmbedded(ServerFixture fixture) : MuteTests(fixture), IClassFixture<ServerFixture>;

public sealed class MuteTestsCluster(Cluster.ClusterNodeFixture fixture) : MuteTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
