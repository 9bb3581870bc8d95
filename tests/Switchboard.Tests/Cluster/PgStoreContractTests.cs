using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage.Postgres;

namespace Switchboard.Tests.Cluster;

/// <summary>
/// The storage contract on the cluster's store: two real PostgreSQL shards (each test in a schema of its own on
/// both). A crash of the process is its pools closed without a word; what PostgreSQL committed is there.
/// </summary>
public sealed class PgStoreContractTests : MessageStoreContract
{
    private readonly List<string> _places = [];

    private protected override string NewPlace()
    {
        var place = "contract_" + Guid.NewGuid().ToString("N")[..12];
        _places.Add(place);
        return place;
    }

    private protected override async Task<StoreUnderTest> OpenAsync(string place)
    {
        var shards = new PgShards(ClusterServices.Current.ShardsIn(place), 8);
        await shards.PrepareAsync(CancellationToken.None);
        return new StoreUnderTest(place, new PgMessageStore(shards), new PgAccountStore(shards), shards.DisposeAsync);
    }

    private protected override async Task<StoreUnderTest> CrashAndReopenAsync(StoreUnderTest store)
    {
        await store.DisposeAsync();
        return await OpenAsync(store.Place);
    }

    /// <summary>
    /// Two nodes (two sequencers, each with its own caches and pools) appending to the same conversations at once:
    /// a batch refused because the other node moved a head is decided again, so every send is acked once, the seqs
    /// are gap-free, and each sender's messages keep their order.
    /// </summary>
    [Fact]
    public async Task Two_nodes_appending_to_the_same_conversations_keep_seqs_gap_free_and_each_senders_order()
    {
        var other = await OpenAsync(Current.Place);
        var alice = TestServer.NewUser("na");
        var bob = TestServer.NewUser("nb");
        await Current.Accounts.CreateUserAsync(new UserRecord(alice, [1], [1], "p", 1));
        await Current.Accounts.CreateUserAsync(new UserRecord(bob, [1], [1], "p", 1));
        var convs = new[] { Names.DirectConversation(alice, bob) };
        await using (var one = Current.Path(sharedWriters: true))
        await using (var two = other.Path(sharedWriters: true))
        {
            var rounds = Enumerable.Range(0, 8).Select(async round =>
            {
                var a = one.SendAllAsync(alice, convs[0], [.. Enumerable.Range(0, 25).Select(i => $"a{round:D2}-{i:D2}")]);
                var b = two.SendAllAsync(bob, convs[0], [.. Enumerable.Range(0, 25).Select(i => $"b{round:D2}-{i:D2}")]);
                await Task.WhenAll(a, b);
            });
            foreach (var round in rounds)
            {
                await round;
            }
        }

        var stored = await Current.Store.ReadAfterAsync(convs[0], 0, long.MaxValue, 1_000);
        Assert.Equal(Enumerable.Range(1, 400).Select(i => (long)i), stored.Select(e => e.Seq));
        Assert.Equal(400, stored.Select(e => e.Cid).Distinct().Count());
        var alices = stored.Where(e => e.Sender == alice).Select(e => e.Cid).ToList();
        var bobs = stored.Where(e => e.Sender == bob).Select(e => e.Cid).ToList();
        Assert.Equal(alices.Order(StringComparer.Ordinal), alices);
        Assert.Equal(bobs.Order(StringComparer.Ordinal), bobs);
        Assert.Equal(400, await other.Store.GetLastSeqAsync(convs[0]));
        await other.DisposeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var place in _places.Distinct())
        {
            ClusterServices.Current.DropSchema(place);
        }
    }
}
