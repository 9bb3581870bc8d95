using Switchboard.Server.Storage;

namespace Switchboard.Tests;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualClock : TimeProvider
{
    private long _offsetMs;

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow().AddMilliseconds(Interlocked.Read(ref _offsetMs));

    public void Advance(TimeSpan by) => Interlocked.Add(ref _offsetMs, (long)by.TotalMilliseconds);
}

public sealed class RetentionTests
{
    [Fact]
    public async Task History_stops_at_the_retention_period_and_the_purge_deletes_what_is_older()
    {
        var clock = new ManualClock();
        await using var server = await TestServer.StartAsync(
            new Dictionary<string, string?> { ["Switchboard:Storage:RetentionDays"] = "30" },
            configure: builder => builder.Services.AddSingleton<TimeProvider>(clock));
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        await alice.SendAckedAsync(conv, "old news");
        clock.Advance(TimeSpan.FromDays(31));
        await alice.SendAckedAsync(conv, "fresh");

        var (_, history) = await server.GetAsync($"/v1/conversations/{conv}/messages", alice.Token);
        Assert.Equal("fresh", Assert.Single(history.GetProperty("messages").EnumerateArray()).GetProperty("body").GetString());

        var store = server.Services.GetRequiredService<IMessageStore>();
        var cutoff = clock.GetUtcNow().AddDays(-30).ToUnixTimeMilliseconds();
        Assert.True(await store.PurgeAsync(cutoff, 1000) >= 1);
        Assert.Equal(["fresh"], (await store.ReadAfterAsync(conv, 0, long.MaxValue, 10)).Select(m => m.Body));

        // Seqs go on from where they were: a purge never lets a conversation reuse a seq.
        var next = await alice.SendAckedAsync(conv, "after the purge");
        Assert.Equal(3, next.GetProperty("seq").GetInt64());
    }
}
