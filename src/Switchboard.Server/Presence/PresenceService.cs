using System.Collections.Concurrent;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Delivery;
using Switchboard.Server.Messaging;
using Switchboard.Server.Routing;

namespace Switchboard.Server.Presence;

/// <summary>
/// Online while the user's TTL lives: refreshed by any frame from any of their sockets, ended at once when their
/// last device anywhere goes (the router says, not this node's sockets), or by the sweep when a client vanished
/// without closing. <c>last_seen</c> is written at that moment. Watchers (a socket's open chats) get the current
/// state, then a delta on each change, for as long as they share a conversation with the user; every frame goes
/// out through the delivery hub.
/// </summary>
internal sealed class PresenceService(
    IPresenceStore store,
    ISessionRouter router,
    IDeliveryHub hub,
    ConversationAccess access,
    AccountService accounts,
    TimeProvider time,
    Microsoft.Extensions.Options.IOptions<Gateway.GatewayOptions> gateway,
    IPresenceRelay? relay = null)
{
    private long PresenceTtlMs => 2_000L * gateway.Value.HeartbeatSeconds;

    private readonly ConcurrentDictionary<string, HashSet<ConnectionContext>> _watchers = new(StringComparer.Ordinal);

    // Cluster mode: what this node's watchers were last told of each user they watch (true: online).
    private readonly ConcurrentDictionary<string, bool> _told = new(StringComparer.Ordinal);

    // Transitions of one user are serialised by one of these (striped: no lock object per user). Async, because
    // a transition reads the router and the store.
    private readonly SemaphoreSlim[] _stripes = [.. Enumerable.Range(0, 64).Select(_ => new SemaphoreSlim(1, 1))];

    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    private SemaphoreSlim Stripe(string user) => _stripes[(uint)StringComparer.Ordinal.GetHashCode(user) % (uint)_stripes.Length];

    public async ValueTask<(bool Online, long? LastSeen)> GetAsync(string user) =>
        await store.IsOnlineAsync(user, Now) ? (true, null) : (false, await accounts.GetLastSeenAsync(user));

    public ValueTask<bool> MayWatchAsync(string watcher, string user) => access.SharesConversationAsync(watcher, user);

    /// <summary>Traffic from one of the user's sockets: extends the TTL; tells watchers if it made them online.</summary>
    /// <remarks>On every frame: completes at once, allocating nothing, unless the user just came online.</remarks>
    public ValueTask TouchAsync(string user)
    {
        var refreshed = store.RefreshAsync(user, Now);
        if (refreshed.IsCompletedSuccessfully)
        {
            return refreshed.Result ? CameOnlineAsync(user) : ValueTask.CompletedTask;
        }

        return RefreshedAsync(refreshed, user);
    }

    private async ValueTask RefreshedAsync(ValueTask<bool> pending, string user)
    {
        if (await pending)
        {
            await CameOnlineAsync(user);
        }
    }

    private async ValueTask CameOnlineAsync(string user)
    {
        var stripe = Stripe(user);
        await stripe.WaitAsync();
        try
        {
            if (await store.IsOnlineAsync(user, Now))
            {
                await NotifyAsync(user, Messaging.Frames.Serialize(new PresenceFrame(user, true, null)));
            }
        }
        finally
        {
            stripe.Release();
        }
    }

    /// <summary>A socket closed; <paramref name="last"/> when the router says it was the user's last device anywhere.</summary>
    public async ValueTask DisconnectedAsync(ConnectionContext client, bool last)
    {
        foreach (var user in client.State.Watching)
        {
            await Unwatch(client, user);
        }

        if (!last)
        {
            return;
        }

        var stripe = Stripe(client.User);
        await stripe.WaitAsync();
        try
        {
            // Another device may have come online meanwhile: only the truly last one ends the presence.
            if (!await router.IsOnlineAsync(client.User) && await store.RemoveAsync(client.User))
            {
                await WentOfflineAsync(client.User, Now);
            }
        }
        finally
        {
            stripe.Release();
        }
    }

    /// <summary>
    /// Cluster mode: the state of every user this node's watchers watch, read again and told where it changed. A
    /// change another node saw reaches here as a hint, which can be lost; and a node that dies tells no one its
    /// users went offline (their presence lapses in Redis). Each node brings its own watchers up to date, so
    /// nothing is told twice across nodes.
    /// </summary>
    public async Task ReconcileAsync()
    {
        if (relay is null)
        {
            return;
        }

        foreach (var user in _watchers.Keys)
        {
            var online = await store.IsOnlineAsync(user, Now);
            if (!_told.TryGetValue(user, out var told) || told == online)
            {
                continue;
            }

            var stripe = Stripe(user);
            await stripe.WaitAsync();
            try
            {
                if (_told.TryGetValue(user, out told) && told != online && await store.IsOnlineAsync(user, Now) == online)
                {
                    long? lastSeen = null;
                    if (!online)
                    {
                        // Gone with its node: seen last at most a presence TTL ago.
                        lastSeen = Math.Max(await accounts.GetLastSeenAsync(user) ?? 0, Now - PresenceTtlMs);
                        await accounts.SetLastSeenAsync(user, lastSeen.Value);
                    }

                    await NotifyAsync(user, Messaging.Frames.Serialize(new PresenceFrame(user, online, lastSeen)), fromPeer: true);
                }
            }
            finally
            {
                stripe.Release();
            }
        }
    }

    /// <summary>Ends the presence of users whose TTL lapsed (clients that vanished without closing).</summary>
    public async Task SweepAsync()
    {
        foreach (var (user, lastRefresh) in await store.ExpireAsync(Now))
        {
            var stripe = Stripe(user);
            await stripe.WaitAsync();
            try
            {
                await WentOfflineAsync(user, lastRefresh);
            }
            finally
            {
                stripe.Release();
            }
        }
    }

    public async ValueTask WatchAsync(ConnectionContext client, string[] users)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var user in users)
        {
            if (!Names.IsValidHandle(user) || !await accounts.UserExistsAsync(user) || !await MayWatchAsync(client.User, user))
            {
                // One answer for unknown and unshared users, so watch cannot probe who exists.
                await hub.SendToConnectionAsync(client, Messaging.Frames.Error(ErrorCodes.Forbidden, "you share no conversation with this user", user));
                continue;
            }

            wanted.Add(user);
        }

        var previous = client.State.Watching;
        client.State.Watching = wanted;
        foreach (var user in previous)
        {
            if (!wanted.Contains(user))
            {
                await Unwatch(client, user);
            }
        }

        foreach (var user in wanted)
        {
            var stripe = Stripe(user);
            await stripe.WaitAsync();
            try
            {
                _watchers.GetOrAdd(user, static _ => []).Add(client);
                var (online, lastSeen) = await GetAsync(user);
                if (relay is not null)
                {
                    _told[user] = online;
                }

                await hub.SendToConnectionAsync(client, Messaging.Frames.Serialize(new PresenceFrame(user, online, lastSeen)));
            }
            finally
            {
                stripe.Release();
            }
        }
    }

    private async ValueTask Unwatch(ConnectionContext client, string user)
    {
        var stripe = Stripe(user);
        await stripe.WaitAsync();
        try
        {
            if (_watchers.TryGetValue(user, out var set) && set.Remove(client) && set.Count == 0)
            {
                _watchers.TryRemove(user, out _);
                _told.TryRemove(user, out _);
            }
        }
        finally
        {
            stripe.Release();
        }
    }

    /// <summary>Writes last_seen and tells the watchers. Caller holds the user's stripe.</summary>
    private async ValueTask WentOfflineAsync(string user, long lastSeen)
    {
        await accounts.SetLastSeenAsync(user, lastSeen);
        await NotifyAsync(user, Messaging.Frames.Serialize(new PresenceFrame(user, false, lastSeen)));
    }

    /// <summary>A presence change another node saw, for the watchers on this node.</summary>
    public async ValueTask NotifyFromPeerAsync(string user, byte[] frame)
    {
        var stripe = Stripe(user);
        await stripe.WaitAsync();
        try
        {
            await NotifyAsync(user, frame, fromPeer: true);
        }
        finally
        {
            stripe.Release();
        }
    }

    /// <summary>
    /// Sends a delta to the user's watchers (and, in a cluster, to the other nodes' watchers); one who no longer
    /// shares a conversation is dropped. Caller holds the stripe.
    /// </summary>
    private async ValueTask NotifyAsync(string user, byte[] frame, bool fromPeer = false)
    {
        if (!fromPeer)
        {
            relay?.Publish(user, frame);
        }

        if (relay is not null && _watchers.ContainsKey(user))
        {
            using var parsed = System.Text.Json.JsonDocument.Parse(frame);
            _told[user] = parsed.RootElement.TryGetProperty("online", out var online) && online.GetBoolean();
        }

        if (!_watchers.TryGetValue(user, out var set))
        {
            return;
        }

        foreach (var watcher in set.ToArray())
        {
            if (await MayWatchAsync(watcher.User, user))
            {
                await hub.SendToConnectionAsync(watcher, frame);
            }
            else
            {
                set.Remove(watcher);
            }
        }
    }
}

/// <summary>Carries presence changes to the watchers on other nodes (cluster mode).</summary>
internal interface IPresenceRelay
{
    void Publish(string user, byte[] frame);
}

/// <summary>Runs the presence sweep: often enough that a lapsed TTL shows within about a second.</summary>
internal sealed class PresenceSweeper(PresenceService presence) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        var ticks = 0;
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await presence.SweepAsync();
                if (++ticks % 4 == 0)
                {
                    await presence.ReconcileAsync(); // cluster mode only: every two seconds
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // a failed sweep is retried at the next tick; users stay online a little longer
            }
        }
    }
}
