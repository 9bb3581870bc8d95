using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Switchboard.Server.Gateway;

namespace Switchboard.Server.Presence;

/// <summary>
/// The embedded presence store. A refresh moves the user's expiry; it re-files the user in a one-second bucket
/// only when the expiry crossed into a new second, so a chatty client costs a compare, not a write, per frame.
/// The sweep empties the buckets that are due and drops users whose expiry really passed (stale entries from
/// earlier buckets are skipped).
/// </summary>
internal sealed class InMemoryPresenceStore(IOptions<GatewayOptions> gateway) : IPresenceStore
{
    // TTL = 2 × heartbeat: one missed ping is tolerated, two are not (PROTOCOL.md).
    private readonly long _ttlMs = 2_000L * gateway.Value.HeartbeatSeconds;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, ConcurrentQueue<string>> _buckets = new();
    private long _sweptUpTo = -1;

    public ValueTask<bool> RefreshAsync(string user, long nowMs) => ValueTask.FromResult(Refresh(user, nowMs));

    private bool Refresh(string user, long nowMs)
    {
        var expires = nowMs + _ttlMs;
        while (true)
        {
            if (_entries.TryGetValue(user, out var entry))
            {
                var previous = Volatile.Read(ref entry.ExpiresAt);
                if (previous <= nowMs)
                {
                    // Lapsed but not swept yet: take it over as a new presence.
                    if (_entries.TryUpdate(user, new Entry(expires), entry))
                    {
                        File(user, expires);
                        return true;
                    }

                    continue;
                }

                if (expires / 1000 != previous / 1000)
                {
                    Volatile.Write(ref entry.ExpiresAt, expires);
                    File(user, expires);
                }
                else if (expires > previous)
                {
                    Volatile.Write(ref entry.ExpiresAt, expires);
                }

                return false;
            }

            if (_entries.TryAdd(user, new Entry(expires)))
            {
                File(user, expires);
                return true;
            }
        }
    }

    public ValueTask<bool> RemoveAsync(string user) => ValueTask.FromResult(_entries.TryRemove(user, out _));

    public ValueTask<bool> IsOnlineAsync(string user, long nowMs) =>
        ValueTask.FromResult(_entries.TryGetValue(user, out var entry) && Volatile.Read(ref entry.ExpiresAt) > nowMs);

    public ValueTask<IReadOnlyList<(string User, long LastRefresh)>> ExpireAsync(long nowMs) => ValueTask.FromResult(Expire(nowMs));

    private IReadOnlyList<(string User, long LastRefresh)> Expire(long nowMs)
    {
        var expired = new List<(string, long)>();
        var due = nowMs / 1000;
        var from = _sweptUpTo < 0 ? due - (_ttlMs / 1000) - 2 : _sweptUpTo + 1;
        for (var second = from; second < due; second++)
        {
            if (!_buckets.TryRemove(second, out var queue))
            {
                continue;
            }

            while (queue.TryDequeue(out var user))
            {
                if (_entries.TryGetValue(user, out var entry) && Volatile.Read(ref entry.ExpiresAt) <= nowMs
                    && _entries.TryRemove(new KeyValuePair<string, Entry>(user, entry)))
                {
                    expired.Add((user, entry.ExpiresAt - _ttlMs));
                }
            }
        }

        _sweptUpTo = due - 1;
        return expired;
    }

    private void File(string user, long expires) =>
        _buckets.GetOrAdd(expires / 1000, static _ => new ConcurrentQueue<string>()).Enqueue(user);

    private sealed class Entry(long expiresAt)
    {
        public long ExpiresAt = expiresAt;
    }
}
