using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Tests;

/// <summary>Run on the embedded server and on a node of a cluster (<see cref="GroupTestsEmbedded"/>, <see cref="GroupTestsCluster"/>).</summary>
public abstract class GroupTests(IServerFixture fixture)
{
    private TestServer Server => fixture.Server;

    private async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, string token, object? body = null)
    {
        using var request = Server.Request(method, path, token);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }

        using var response = await Server.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private async Task<string> CreateAsync(TestClient creator, string name, params string[] members)
    {
        var (status, group) = await SendAsync(HttpMethod.Post, "/v1/groups", creator.Token, new { name, members });
        Assert.Equal(HttpStatusCode.Created, status);
        return group.GetProperty("conv").GetString()!;
    }

    private static async Task<JsonElement> SystemAsync(TestClient client, string op) =>
        await client.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "system" && f.GetProperty("system").GetProperty("op").GetString() == op);

    [Fact]
    public async Task Creating_a_group_makes_a_created_event_at_seq_1_for_every_member_device()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        var (status, group) = await SendAsync(HttpMethod.Post, "/v1/groups", alice.Token, new { name = "Trip", members = new[] { bob.User, carol.User } });
        Assert.Equal(HttpStatusCode.Created, status);
        var conv = group.GetProperty("conv").GetString()!;
        Assert.StartsWith("grp:", conv);
        Assert.Equal("Trip", group.GetProperty("name").GetString());
        var roles = group.GetProperty("members").EnumerateArray().ToDictionary(m => m.GetProperty("user").GetString()!, m => m.GetProperty("role").GetString());
        Assert.Equal("admin", roles[alice.User]);
        Assert.Equal("member", roles[bob.User]);
        Assert.Equal(3, roles.Count);

        foreach (var client in new[] { alice, bob, carol }) // the acting device gets it too
        {
            var created = await SystemAsync(client, "created");
            Assert.Equal(1, created.GetProperty("seq").GetInt64());
            Assert.Equal(conv, created.GetProperty("conv").GetString());
            Assert.Equal(alice.User, created.GetProperty("from").GetString());
            Assert.Equal(alice.Device, created.GetProperty("dev").GetInt32());
            Assert.Equal("Trip", created.GetProperty("system").GetProperty("name").GetString());
        }

        var (getStatus, fetched) = await SendAsync(HttpMethod.Get, $"/v1/groups/{conv}", bob.Token);
        Assert.Equal(HttpStatusCode.OK, getStatus);
        Assert.Equal(3, fetched.GetProperty("members").GetArrayLength());
    }

    [Fact]
    public async Task Group_messages_reach_every_device_of_every_member_in_order()
    {
        var alice = await Server.NewClientAsync();
        var alice2 = await Server.NewDeviceAsync(alice.User);
        var bob = await Server.NewClientAsync();
        var bob2 = await Server.NewDeviceAsync(bob.User);
        var carol = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "order", bob.User, carol.User);
        for (var i = 0; i < 50; i++)
        {
            await alice.SendTextAsync(conv, $"m{i}");
        }

        foreach (var client in new[] { alice2, bob, bob2, carol })
        {
            var seqs = new List<long>();
            while (seqs.Count < 51)
            {
                seqs.Add((await client.ExpectAsync("msg")).GetProperty("seq").GetInt64());
            }

            Assert.Equal(Enumerable.Range(1, 51).Select(i => (long)i), seqs);
        }

        Assert.DoesNotContain(await alice.DrainAsync(), f => f.GetProperty("t").GetString() == "msg" && f.GetProperty("kind").GetString() == "text");
    }

    [Fact]
    public async Task Only_admins_add_and_a_new_member_sees_from_their_joining_on()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var dave = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "club", bob.User);
        await alice.SendAckedAsync(conv, "before dave");

        var (forbidden, error) = await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", bob.Token, new { users = new[] { dave.User } });
        Assert.Equal(HttpStatusCode.Forbidden, forbidden);
        Assert.Equal("forbidden", error.GetProperty("error").GetString());

        var (ok, group) = await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", alice.Token, new { users = new[] { dave.User, bob.User } });
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.Equal(3, group.GetProperty("members").GetArrayLength());
        var added = await SystemAsync(dave, "added");
        Assert.Equal(3, added.GetProperty("seq").GetInt64());
        Assert.Equal([dave.User], added.GetProperty("system").GetProperty("users").EnumerateArray().Select(u => u.GetString()!)); // existing members ignored

        await alice.SendAckedAsync(conv, "after dave");
        Assert.Equal("after dave", (await dave.ExpectAsync("msg")).GetProperty("body").GetString());
        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", dave.Token);
        Assert.Equal([4L, 3L], history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()));

        // Adding only existing members changes nothing and makes no event.
        var (same, _) = await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", alice.Token, new { users = new[] { bob.User } });
        Assert.Equal(HttpStatusCode.OK, same);
        var (unknown, _) = await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", alice.Token, new { users = new[] { "nobody-" + Guid.NewGuid().ToString("N")[..6] } });
        Assert.Equal(HttpStatusCode.NotFound, unknown);
    }

    [Fact]
    public async Task A_removed_member_gets_the_removal_and_nothing_after_it()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "removal", bob.User, carol.User);
        await SystemAsync(bob, "created");

        var (status, _) = await SendAsync(HttpMethod.Delete, $"/v1/groups/{conv}/members/{bob.User}", alice.Token);
        Assert.Equal(HttpStatusCode.NoContent, status);
        var removed = await SystemAsync(bob, "removed");
        Assert.Equal(2, removed.GetProperty("seq").GetInt64());

        await alice.SendAckedAsync(conv, "bob cannot see this");
        await alice.SendAsync(new { t = "typing", conv, on = true });
        await carol.ExpectAsync("typing");
        var after = await bob.DrainAsync();
        Assert.DoesNotContain(after, f => f.GetProperty("t").GetString() is "msg" or "typing");

        var cid = await bob.SendTextAsync(conv, "still here?");
        var error = await bob.ExpectAsync("error");
        Assert.Equal("forbidden", error.GetProperty("code").GetString());
        Assert.Equal(cid, error.GetProperty("ref").GetString());

        var (_, history) = await Server.GetAsync($"/v1/conversations/{conv}/messages", bob.Token);
        Assert.Equal([2L, 1L], history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()));
        var (_, list) = await Server.GetAsync("/v1/conversations", bob.Token);
        var row = list.EnumerateArray().Single(r => r.GetProperty("conv").GetString() == conv);
        Assert.Equal(2, row.GetProperty("last_seq").GetInt64());
        Assert.Equal("group", row.GetProperty("kind").GetString());

        await bob.SendAsync(new { t = "sync", conv, after = 0 });
        var synced = await bob.ExpectAsync("synced");
        Assert.Equal(2, synced.GetProperty("upto").GetInt64());
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, $"/v1/groups/{conv}", bob.Token)).Status);

        // Offline replay stops at the removal too.
        var bob2 = await Server.NewDeviceAsync(bob.User);
        Assert.DoesNotContain(await bob2.DrainAsync(), f => f.GetProperty("t").GetString() == "msg");
    }

    [Fact]
    public async Task When_the_last_admin_leaves_the_longest_standing_member_becomes_admin()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var carol = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "succession", bob.User);
        await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", alice.Token, new { users = new[] { carol.User } });

        var (status, _) = await SendAsync(HttpMethod.Delete, $"/v1/groups/{conv}/members/{alice.User}", alice.Token);
        Assert.Equal(HttpStatusCode.NoContent, status);
        var left = await SystemAsync(carol, "left");
        Assert.Equal([alice.User], left.GetProperty("system").GetProperty("users").EnumerateArray().Select(u => u.GetString()!));
        Assert.Equal([bob.User], left.GetProperty("system").GetProperty("promoted").EnumerateArray().Select(u => u.GetString()!));
        await SystemAsync(alice, "left"); // the leaver gets the event of their leaving

        var (_, group) = await SendAsync(HttpMethod.Get, $"/v1/groups/{conv}", carol.Token);
        Assert.Equal("admin", group.GetProperty("members").EnumerateArray().Single(m => m.GetProperty("user").GetString() == bob.User).GetProperty("role").GetString());
    }

    [Fact]
    public async Task Rename_and_roles_are_for_admins_and_are_events()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "old name", bob.User);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Patch, $"/v1/groups/{conv}", bob.Token, new { name = "mine" })).Status);
        var (ok, renamed) = await SendAsync(HttpMethod.Patch, $"/v1/groups/{conv}", alice.Token, new { name = "new name" });
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.Equal("new name", renamed.GetProperty("name").GetString());
        Assert.Equal("new name", (await SystemAsync(bob, "renamed")).GetProperty("system").GetProperty("name").GetString());

        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Put, $"/v1/groups/{conv}/members/{alice.User}", alice.Token, new { role = "member" })).Status);
        var (promoted, group) = await SendAsync(HttpMethod.Put, $"/v1/groups/{conv}/members/{bob.User}", alice.Token, new { role = "admin" });
        Assert.Equal(HttpStatusCode.OK, promoted);
        Assert.All(group.GetProperty("members").EnumerateArray(), m => Assert.Equal("admin", m.GetProperty("role").GetString()));
        var role = await SystemAsync(bob, "role");
        Assert.Equal("admin", role.GetProperty("system").GetProperty("role").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Patch, $"/v1/groups/{conv}", alice.Token, new { name = "" })).Status);
    }

    [Fact]
    public async Task A_late_joiner_counts_unread_and_cursors_from_their_joining()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "late");
        for (var i = 0; i < 5; i++)
        {
            await alice.SendAckedAsync(conv, $"before bob {i}");
        }

        await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", alice.Token, new { users = new[] { bob.User } });
        await alice.SendAckedAsync(conv, "after bob");
        var (_, list) = await Server.GetAsync("/v1/conversations", bob.Token);
        var row = list.EnumerateArray().Single(r => r.GetProperty("conv").GetString() == conv);
        Assert.Equal(8, row.GetProperty("last_seq").GetInt64());
        Assert.Equal(1, row.GetProperty("unread").GetInt64()); // only "after bob"
        Assert.Equal(6, row.GetProperty("read").GetInt64());
    }

    [Fact]
    public async Task A_removed_member_cannot_read_message_info()
    {
        var alice = await Server.NewClientAsync();
        var bob = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "info", bob.User);
        await SendAsync(HttpMethod.Delete, $"/v1/groups/{conv}/members/{bob.User}", alice.Token);
        Assert.Equal(HttpStatusCode.Forbidden, (await Server.GetAsync($"/v1/conversations/{conv}/receipts?seq=1", bob.Token)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Server.GetAsync($"/v1/conversations/{conv}/receipts?seq=1", alice.Token)).Status);
    }

    [Fact]
    public async Task Unknown_groups_are_404_and_outsiders_403()
    {
        var alice = await Server.NewClientAsync();
        var outsider = await Server.NewClientAsync();
        var conv = await CreateAsync(alice, "private");
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, "/v1/groups/grp:0", alice.Token)).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, $"/v1/groups/{conv}", outsider.Token)).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", outsider.Token, new { users = new[] { outsider.User } })).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await Server.GetAsync($"/v1/conversations/{conv}/messages", outsider.Token)).Status);
        await outsider.SendTextAsync(conv, "let me in");
        Assert.Equal("forbidden", (await outsider.ExpectAsync("error")).GetProperty("code").GetString());
        var (unknownMember, _) = await SendAsync(HttpMethod.Post, "/v1/groups", alice.Token, new { name = "x", members = new[] { "nobody-" + Guid.NewGuid().ToString("N")[..6] } });
        Assert.Equal(HttpStatusCode.NotFound, unknownMember);
    }
}

public sealed class GroupLimitTests
{
    [Fact]
    public async Task The_1025th_member_is_refused()
    {
        await using var server = await TestServer.StartAsync();
        var creator = await server.NewClientAsync();
        var users = new List<string>();
        for (var i = 0; i < 1024; i++)
        {
            users.Add(await server.RegisterAsync());
        }

        async Task<(HttpStatusCode, string?)> PostAsync(string path, object body)
        {
            using var request = server.Request(HttpMethod.Post, path, creator.Token);
            request.Content = JsonContent.Create(body);
            using var response = await server.Http.SendAsync(request);
            var json = await response.Content.ReadFromJsonAsync<JsonElement>();
            return (response.StatusCode, json.TryGetProperty("error", out var e) ? e.GetString() : json.GetProperty("conv").GetString());
        }

        Assert.Equal((HttpStatusCode.BadRequest, "too_large"), await PostAsync("/v1/groups", new { name = "too big", members = users })); // 1 + 1024
        var (created, conv) = await PostAsync("/v1/groups", new { name = "full", members = users.Take(1023) });
        Assert.Equal(HttpStatusCode.Created, created);
        Assert.Equal((HttpStatusCode.BadRequest, "too_large"), await PostAsync($"/v1/groups/{conv}/members", new { users = new[] { users[1023] } }));
        var (_, group) = await server.GetAsync($"/v1/groups/{conv}", creator.Token);
        Assert.Equal(1024, group.GetProperty("members").GetArrayLength());
    }
}

public sealed class GroupTestsEmbedded(ServerFixture fixture) : GroupTests(fixture), IClassFixture<ServerFixture>;

public sealed class GroupTestsCluster(Cluster.ClusterNodeFixture fixture) : GroupTests(fixture), IClassFixture<Cluster.ClusterNodeFixture>;
