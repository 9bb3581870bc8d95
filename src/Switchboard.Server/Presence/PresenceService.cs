using System.Collections.Concurrent;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Messaging;
using Switchboard.Server.Routing;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Presence;

/// <summary>
/// Online while the user's TTL lives: refreshed by any frame from any of their sockets, ended at once when their
/// last socket closes, or by the sweep when a client vanished without closing. <c>last_seen</c> is written at
/// that moment. Watchers (a socket's open chats) get the current state, then a delta on each change, for as
/// long as they share a conversation with the user.
/// </summary>
internal sealed class PresenceService(
    IPresenceStore store,
    ISessionRouter router,
    IMessageStore messages,
    AccountStore accounts,
    TimeProvider time)
{
    private readonly ConcurrentDictionary<string, HashSet<IClient>> _watchers = new(StringComparer.Ordinal);

    // Transitions of one user are serialised by one of these (striped: no lock object per user).
    private readonly Lock[] _stripes = [.. Enumerable.Range(0, 64).Select(_ => new Lock())];

    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    private Lock Stripe(string user) => _stripes[(uint)StringComparer.Ordinal.GetHashCode(user) % (uint)_stripes.Length];

    /// <summary>last_seen values written but perhaps not yet committed; small (one per user who went offline).</summary>
    private readonly ConcurrentDictionary<string, long> _pendingLastSeen = new(StringComparer.Ordinal);

    public (bool Online, long? LastSeen) Get(string user) =>
        store.IsOnline(user, Now) ? (true, null) : (false, _pendingLastSeen.TryGetValue(user, out var seen) ? seen : accounts.GetLastSeen(user));

    public bool MayWatch(string watcher, string user) => messages.SharesConversation(watcher, user);

    /// <summary>Traffic from one of the user's sockets: extends the TTL; tells watchers if they came online.</summary>
    public void Touch(string user)
    {
        if (!store.Refresh(user, Now))
        {
            return;
        }

        lock (Stripe(user))
        {
            if (store.IsOnline(user, Now))
            {
                Notify(user, Frames.Serialize(new PresenceFrame(user, true, null)));
            }
        }
    }

    /// <summary>A socket closed; <paramref name="last"/> when it was the user's last one.</summary>
    public void Disconnected(IClient client, bool last)
    {
        foreach (var user in client.State.Watching)
        {
            lock (Stripe(user))
            {
                if (_watchers.TryGetValue(user, out var set) && set.Remove(client) && set.Count == 0)
                {
                    _watchers.TryRemove(user, out _);
                }
            }
        }

        if (!last)
        {
            return;
        }

        var user0 = client.User;
        lock (Stripe(user0))
        {
            // Another device may have connected meanwhile: only the truly last goes offline.
            if (router.Sessions(user0).Count == 0 && store.Remove(user0))
            {
                WentOffline(user0, Now);
            }
        }
    }

    /// <summary>Ends the presence of users whose TTL lapsed (clients that vanished without closing).</summary>
    public void Sweep()
    {
        foreach (var (user, lastRefresh) in store.Expire(Now))
        {
            lock (Stripe(user))
            {
                WentOffline(user, lastRefresh);
            }
        }
    }

    public void Watch(IClient client, string[] users)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var user in users)
        {
            if (!Names.IsValidHandle(user) || !accounts.UserExists(user) || !MayWatch(client.User, user))
            {
                // One answer for unknown and unshared users, so watch cannot probe who exists.
                client.Send(Frames.Error(ErrorCodes.Forbidden, "you share no conversation with this user", user));
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
                lock (Stripe(user))
                {
                    if (_watchers.TryGetValue(user, out var set) && set.Remove(client) && set.Count == 0)
                    {
                        _watchers.TryRemove(user, out _);
                    }
                }
            }
        }

        foreach (var user in wanted)
        {
            lock (Stripe(user))
            {
                _watchers.GetOrAdd(user, static _ => []).Add(client);
                var (online, lastSeen) = Get(user);
                client.Send(Frames.Serialize(new PresenceFrame(user, online, lastSeen)));
            }
        }
    }

    private void WentOffline(string user, long lastSeen)
    {
        // Through the group commit: a storm of disconnects shares fsyncs. Pulls meanwhile read it from here.
        _pendingLastSeen[user] = lastSeen;
        var committed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = committed.Task.ContinueWith(
            _ => _pendingLastSeen.TryRemove(new KeyValuePair<string, long>(user, lastSeen)),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        _ = messages.SubmitAsync(new TouchCommand { Origin = new ServerOrigin(user, 0), Conv = "", User = user, Ts = lastSeen, Completion = committed }, CancellationToken.None).AsTask();
        Notify(user, Frames.Serialize(new PresenceFrame(user, false, lastSeen)));
    }

    /// <summary>Sends a delta to the user's watchers; one who no longer shares a conversation is dropped. Caller holds the stripe.</summary>
    private void Notify(string user, byte[] frame)
    {
        if (!_watchers.TryGetValue(user, out var set))
        {
            return;
        }

        foreach (var watcher in set.ToArray())
        {
            if (MayWatch(watcher.User, user))
            {
                watcher.Send(frame);
            }
            else
            {
                set.Remove(watcher);
            }
        }
    }
}

/// <summary>Runs the presence sweep: often enough that a lapsed TTL shows within about a second.</summary>
internal sealed class PresenceSweeper(PresenceService presence) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                presence.Sweep();
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // a failed sweep is retried at the next tick; users stay online a little longer
            }
        }
    }
}
