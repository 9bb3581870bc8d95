using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;
using Switchboard.Server.Messaging;
using Switchboard.Server.Presence;
using Switchboard.Server.Storage.Postgres;

namespace Switchboard.Server.Cluster;

/// <summary>
/// A cluster node's start and stop: the shards are checked before anything listens (the launcher does that, so a
/// missing shard is an exit code), the sequencer starts, the node announces itself in Redis and keeps its sessions
/// there fresh, and the bus starts routing hints. At stop the node leaves Redis first, so the others stop routing
/// to it, then lets the sequencer commit what it queued.
/// </summary>
internal sealed class ClusterLifetime(
    PgShards shards,
    Sequencer sequencer,
    MessageService messages,
    RedisSessionRouter router,
    ClusterBus bus,
    ClusterDeliveryHub hub,
    GroupDirectory groups,
    GroupReceipts receipts,
    Push.PushDispatcher push,
    Push.VapidKeys vapid,
    PresenceService presence,
    HeadWatch heads,
    MessageRules rules,
    IOptions<ClusterOptions> options,
    SwitchboardMetrics metrics) : IHostedService
{
    private readonly CancellationTokenSource _stopping = new();
    private Task? _refreshing;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await shards.PrepareAsync(cancellationToken); // already checked by the launcher; tests start hosts directly
        await vapid.LoadSharedAsync(cancellationToken);
        sequencer.Start(messages);
        metrics.Observe("switchboard_messaging_cached_entries", "Entries in the sequencer's caches (last seqs, cursors, known users).", () => rules.CachedEntries);
        metrics.Observe("switchboard_messaging_groups_cached", "Group memberships in the group directory.", () => groups.Count);
        metrics.Observe("switchboard_cluster_watched_conversations", "Conversations whose heads the sweep checks for lost hints.", () => heads.Count);
        metrics.Observe("switchboard_cluster_nodes_alive", "Nodes alive in Redis, as this node last read them.", () => router.AliveNodes.Count);
        groups.Changed += conv => bus.Broadcast(new BusRecord(BusKind.GroupChanged, conv));
        groups.MaxAgeMs = 10_000; // a change whose broadcast was lost is seen within ten seconds
        push.Relay = (user, any) => bus.Broadcast(new BusRecord(BusKind.PushRegistered, Seq: any ? 1 : 0, Users: [user]));
        receipts.Relay = (conv, user, delivered, read) => bus.Broadcast(new BusRecord(BusKind.CursorMoved, conv, delivered ?? -1, Users: [user], Read: read ?? -1));
        bus.HintsLost = heads.SweepSoon;
        router.Restored = heads.SweepSoon;
        await router.RefreshAsync();
        bus.Start(ReceiveAsync);
        _refreshing = Task.Run(RefreshLoopAsync, CancellationToken.None);
    }

    private ValueTask ReceiveAsync(BusRecord record)
    {
        switch (record.Kind)
        {
            case BusKind.Presence when record.Users is [var user]:
                return presence.NotifyFromPeerAsync(user, record.Frame!);
            case BusKind.GroupChanged:
                groups.Forget(record.Conv);
                receipts.Forget(record.Conv);
                return ValueTask.CompletedTask;
            case BusKind.PushRegistered when record.Users is [var user]:
                push.Registered(user, record.Seq == 1, fromPeer: true);
                return ValueTask.CompletedTask;
            case BusKind.CursorMoved when record.Users is [var user]:
                receipts.CursorMoved(record.Conv, user, record.Seq < 0 ? null : record.Seq, record.Read < 0 ? null : record.Read, fromPeer: true);
                return ValueTask.CompletedTask;
            default:
                return hub.ReceiveAsync(record);
        }
    }

    /// <summary>Every second: which nodes are alive; every third of the locator TTL: this node's sessions written again.</summary>
    private async Task RefreshLoopAsync()
    {
        var every = Math.Max(1, options.Value.LocatorTtlSeconds / 3);
        var tick = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                if (++tick % every == 0)
                {
                    await router.RefreshAsync();
                }
                else
                {
                    await router.ReadAliveAsync();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_refreshing is not null)
        {
            await _refreshing;
        }

        await router.LeaveAsync();
        sequencer.Dispose();
        await bus.DisposeAsync();
        await router.DisposeAsync();
        await shards.DisposeAsync();
    }
}

/// <summary>Presence changes to every other node's watchers, over the bus.</summary>
internal sealed class BusPresenceRelay(ClusterBus bus) : IPresenceRelay
{
    public void Publish(string user, byte[] frame) => bus.Broadcast(new BusRecord(BusKind.Presence, Frame: frame, Users: [user]));
}
