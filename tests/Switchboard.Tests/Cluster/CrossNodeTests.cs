using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Tests.Cluster;

/// <summary>
/// Users on different nodes of one cluster see one service: messages, receipts, typing, edits and deletes, presence
/// and history cross between nodes, and any HTTP call on any node sees the same state.
/// </summary>
public sealed class CrossNodeTests
{
    [Fact]
    public async Task Two_users_on_two_nodes_chat_with_receipts_typing_edits_presence_and_one_history()
    {
        await using var cluster = await TestCluster.StartAsync(2);
        await cluster.WaitUntilMeshedAsync();
        var alice = await cluster[0].NewClientAsync();
        var bob = await cluster[1].NewClientAsync();
        var conv = Conv.Direct(alice.User, bob.User);

        await alice.SendAckedAsync(conv, "hello across nodes");
        var first = await bob.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "hello across nodes");
        Assert.Equal(1, first.GetProperty("seq").GetInt64());

        await bob.SendAsync(new { t = "recv", conv, seq = 1 });
        await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "delivered" && f.GetProperty("seq").GetInt64() == 1);
        await bob.SendAsync(new { t = "read", conv, seq = 1 });
        await alice.ExpectAsync("receipt", f => f.GetProperty("kind").GetString() == "read" && f.GetProperty("seq").GetInt64() == 1);

        await alice.SendAsync(new { t = "typing", conv, on = true });
        Assert.Equal(alice.User, (await bob.ExpectAsync("typing")).GetProperty("user").GetString());

        await alice.SendAsync(new { t = "edit", cid = Guid.NewGuid().ToString(), conv, target = 1, body = "hello, fixed" });
        var edit = await bob.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "edit");
        Assert.Equal("hello, fixed", edit.GetProperty("body").GetString());
        await alice.SendAsync(new { t = "delete", cid = Guid.NewGuid().ToString(), conv, target = 1 });
        await bob.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "delete");

        await bob.SendAckedAsync(conv, "hi alice");
        Assert.Equal(4, (await alice.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "hi alice")).GetProperty("seq").GetInt64());

        // Presence across nodes: alice watches bob (on the other node), who leaves.
        await alice.SendAsync(new { t = "watch", users = new[] { bob.User } });
        Assert.True((await alice.ExpectAsync("presence")).GetProperty("online").GetBoolean());
        await bob.CloseAsync();
        var offline = await alice.ExpectAsync("presence", f => !f.GetProperty("online").GetBoolean());
        Assert.True(offline.GetProperty("last_seen").GetInt64() > 0);

        // The same history, conversation list and receipts through either node.
        var histories = new List<string>();
        foreach (var node in cluster.Nodes)
        {
            var (status, history) = await node.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            histories.Add(string.Join(",", history.GetProperty("messages").EnumerateArray().Select(m => $"{m.GetProperty("seq").GetInt64()}:{m.GetProperty("kind").GetString()}")));
            var (_, list) = await node.GetAsync("/v1/conversations", bob.Token);
            Assert.Contains(list.EnumerateArray(), c => c.GetProperty("conv").GetString() == conv);
        }

        Assert.Equal("4:text,3:delete,2:edit,1:text", histories[0]);
        Assert.Equal(histories[0], histories[1]);
    }

    [Fact]
    public async Task A_second_device_on_another_node_gets_the_users_own_messages_and_an_unlinked_device_is_closed_wherever_it_is()
    {
        await using var cluster = await TestCluster.StartAsync(2);
        await cluster.WaitUntilMeshedAsync();
        var alice = await cluster[0].NewClientAsync();
        var bob = await cluster[0].NewClientAsync();
        var alice2 = await cluster[1].NewDeviceAsync(alice.User);
        var conv = Conv.Direct(alice.User, bob.User);

        await alice.SendAckedAsync(conv, "from my phone");
        var echo = await alice2.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "from my phone");
        Assert.Equal(alice.User, echo.GetProperty("from").GetString());

        // Unlinked through node 1, while its socket is on node 2.
        var (status, _) = await cluster[0].CallAsync(HttpMethod.Delete, $"/v1/devices/{alice2.Device}", alice.Token);
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NoContent, status.ToString());
        Assert.NotNull(await alice2.WaitClosedAsync());
    }

    [Fact]
    public async Task Abuse_limits_are_shared_by_the_nodes_and_every_node_signs_pushes_with_the_same_key()
    {
        await using var cluster = await TestCluster.StartAsync(2, new Dictionary<string, string?>
        {
            ["Switchboard:Abuse:Enabled"] = "true",
            ["Switchboard:Abuse:RegistrationsPerAddress:Burst"] = "3",
            ["Switchboard:Abuse:RegistrationsPerAddress:PerMinute"] = "1",
        });
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 5; i++)
        {
            // Spread over the nodes, as a client behind a load balancer would be.
            using var response = await cluster[i % 2].Http.PostAsJsonAsync("/v1/accounts", new { user = TestServer.NewUser("r"), password = "correct horse" });
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.Created, HttpStatusCode.Created, HttpStatusCode.Created, HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);

        var keys = new List<string>();
        foreach (var node in cluster.Nodes)
        {
            var key = await node.Http.GetFromJsonAsync<JsonElement>("/v1/push/vapid");
            keys.Add(key.GetProperty("publicKey").GetString()!);
        }

        Assert.Equal(keys[0], keys[1]);
    }
}
