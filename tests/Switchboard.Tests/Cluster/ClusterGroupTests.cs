using System.Net;

namespace Switchboard.Tests.Cluster;

/// <summary>A full group whose members' sockets are spread over three nodes.</summary>
public sealed class ClusterGroupTests
{
    [Fact]
    public async Task A_group_of_1024_on_three_nodes_gets_every_post_in_order_and_the_author_the_aggregated_receipt()
    {
        await using var cluster = await TestCluster.StartAsync(3);
        await cluster.WaitUntilMeshedAsync();
        var alice = await cluster[0].NewClientAsync();
        var members = new TestClient[1023];
        using (var gate = new SemaphoreSlim(16))
        {
            await Task.WhenAll(Enumerable.Range(0, members.Length).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    members[i] = await cluster[i % 3].NewClientAsync(); // registered, linked and connected on its node
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        var (status, created) = await cluster[1].CallAsync(HttpMethod.Post, "/v1/groups", alice.Token, new { name = "everyone", members = members.Select(m => m.User) });
        Assert.Equal(HttpStatusCode.Created, status);
        var conv = created.GetProperty("conv").GetString()!;

        var posts = new[] { "one", "two", "three" };
        var seqs = new List<long>();
        foreach (var body in posts)
        {
            seqs.Add((await alice.SendAckedAsync(conv, body)).GetProperty("seq").GetInt64());
        }

        // Every member, on whichever node, gets the three posts in order (at least once: a client drops a seq it has).
        await Task.WhenAll(members.Select(async member =>
        {
            var got = new List<long>();
            while (got.Count < posts.Length)
            {
                var frame = await member.ExpectAsync("msg", f => f.GetProperty("kind").GetString() == "text", TimeSpan.FromSeconds(30));
                if (!got.Contains(frame.GetProperty("seq").GetInt64()))
                {
                    got.Add(frame.GetProperty("seq").GetInt64());
                }
            }

            Assert.Equal(seqs, got);
        }));

        // Every member acknowledges; the author hears once the last of them has it, whichever node each is on.
        await Task.WhenAll(members.Select(m => m.SendAsync(new { t = "recv", conv, seq = seqs[^1] })));
        var receipt = await alice.ExpectAsync("receipt", f => f.GetProperty("user").GetString() == "*" && f.GetProperty("kind").GetString() == "delivered" && f.GetProperty("seq").GetInt64() == seqs[^1], TimeSpan.FromSeconds(30));
        Assert.Equal(conv, receipt.GetProperty("conv").GetString());

        // A member on the third node posts; the author on the first hears it.
        var answer = await members[2].SendAckedAsync(conv, "from node three");
        var heard = await alice.ExpectAsync("msg", f => f.GetProperty("body").GetString() == "from node three", TimeSpan.FromSeconds(30));
        Assert.Equal(answer.GetProperty("seq").GetInt64(), heard.GetProperty("seq").GetInt64());

        foreach (var member in members)
        {
            await member.DisposeAsync();
        }
    }
}
