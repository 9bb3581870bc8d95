using System.Net;
using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Who may add a user to a group: everyone, contacts (a direct conversation), or nobody; the rest are invited.</summary>
/// <summary>Run on the embedded server and on a node of a cluster.</summary>
public abstract class GroupPrivacyTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private Task<(HttpStatusCode Status, JsonElement Body)> CallAsync(HttpMethod method, string path, string token, object? body = null) =>
        Server.CallAsync(method, path, token, body);

    private static string[] Members(JsonElement group) => [.. group.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("user").GetString()!)];

    [Fact]
    public async Task Nobody_and_contacts_are_invited_instead_of_added_and_an_invite_lets_them_join()
    {
        var admin = await Server.NewClientAsync();
        var open = await Server.NewClientAsync();      // everyone (the default)
        var careful = await Server.NewClientAsync();   // contacts, and has a direct conversation with the admin
        var stranger = await Server.NewClientAsync();  // contacts, no conversation with the admin
        var hermit = await Server.NewClientAsync();    // nobody

        Assert.Equal("everyone", (await CallAsync(HttpMethod.Get, "/v1/settings/privacy", open.Token)).Body.GetProperty("groups_add").GetString());
        foreach (var (client, value) in new[] { (careful, "contacts"), (stranger, "contacts"), (hermit, "nobody") })
        {
            var (status, body) = await CallAsync(HttpMethod.Put, "/v1/settings/privacy", client.Token, new { groups_add = value });
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(value, body.GetProperty("groups_add").GetString());
        }

        Assert.Equal(HttpStatusCode.BadRequest, (await CallAsync(HttpMethod.Put, "/v1/settings/privacy", hermit.Token, new { groups_add = "friends" })).Status);
        await careful.SendAckedAsync(Conv.Direct(careful.User, admin.User), "hi, it's me");

        var (created, group) = await CallAsync(HttpMethod.Post, "/v1/groups", admin.Token, new { name = "club", members = new[] { open.User, careful.User, stranger.User, hermit.User } });
        Assert.Equal(HttpStatusCode.Created, created);
        Assert.Equal(new[] { admin.User, open.User, careful.User }.Order(), Members(group).Order());
        Assert.Equal(new[] { stranger.User, hermit.User }.Order(), group.GetProperty("invited").EnumerateArray().Select(u => u.GetString()!).Order());
        var conv = group.GetProperty("conv").GetString()!;

        // Not a member: nothing of the group reaches them, but the invite is listed.
        var (_, invites) = await CallAsync(HttpMethod.Get, "/v1/invites", hermit.Token);
        var invite = Assert.Single(invites.EnumerateArray());
        Assert.Equal(conv, invite.GetProperty("conv").GetString());
        Assert.Equal("club", invite.GetProperty("name").GetString());
        Assert.Equal(admin.User, invite.GetProperty("from").GetString());
        Assert.Equal(HttpStatusCode.Forbidden, (await CallAsync(HttpMethod.Get, $"/v1/groups/{conv}", hermit.Token)).Status);

        // Adding again does not make them members either.
        var (added, again) = await CallAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", admin.Token, new { users = new[] { hermit.User } });
        Assert.Equal(HttpStatusCode.OK, added);
        Assert.DoesNotContain(hermit.User, Members(again));

        // Accepting the invite: a member, announced to the group like an add; the invite is used up.
        var (joined, afterJoin) = await CallAsync(HttpMethod.Post, $"/v1/groups/{conv}/join", hermit.Token);
        Assert.Equal(HttpStatusCode.OK, joined);
        Assert.Contains(hermit.User, Members(afterJoin));
        var system = await open.ExpectAsync("msg", m => m.GetProperty("kind").GetString() == "system" && m.GetProperty("system").GetProperty("op").GetString() == "added"
            && m.GetProperty("system").GetProperty("users").EnumerateArray().Any(u => u.GetString() == hermit.User));
        Assert.Equal(hermit.User, system.GetProperty("from").GetString());
        Assert.Empty((await CallAsync(HttpMethod.Get, "/v1/invites", hermit.Token)).Body.EnumerateArray());
        Assert.Equal(HttpStatusCode.Forbidden, (await CallAsync(HttpMethod.Post, $"/v1/groups/{conv}/join", hermit.Token)).Status); // used up
        var outsider = await Server.NewClientAsync();
        Assert.Equal(HttpStatusCode.Forbidden, (await CallAsync(HttpMethod.Post, $"/v1/groups/{conv}/join", outsider.Token)).Status);
        var (strangerJoined, final) = await CallAsync(HttpMethod.Post, $"/v1/groups/{conv}/join", stranger.Token);
        Assert.Equal(HttpStatusCode.OK, strangerJoined);
        Assert.Contains(stranger.User, Members(final));
    }
}

public sealed class GroupPrivacyTestsEmbedded(ServerFixture fixture) : GroupPrivacyTests(fixture), IClassFixture<ServerFixture>;

public sealed class GroupPrivacyTestsCluster(Cluster.ClusterNodeFixture fixture) : GroupPrivacyTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
