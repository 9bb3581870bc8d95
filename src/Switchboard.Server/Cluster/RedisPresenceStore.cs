using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Switchboard.Server.Gateway;
using Switchboard.Server.Presence;

namespace Switchboard.Server.Cluster;

/// <summary>
/// Presence across a cluster: <c>SET {name}:presence:{user} {last refresh} PX ttl</c> in Redis, shared by the nodes,
/// on top of this node's own TTLs (<see cref="InMemoryPresenceStore"/>, which keeps the per-frame refresh a compare
/// in memory). Redis is written when a user comes online here and then at most every third of the TTL, never on
/// the frame's path. A user whose TTL lapsed here is offline only if no other node refreshed them since; when
/// Redis cannot be reached, this node's view stands.
/// </summary>
internal sealed class RedisPresenceStore(RedisSessionRouter redis, IOptions<GatewayOptions> gateway) : IPresenceStore
{
    private readonly InMemoryPresenceStore _local = new(gateway);
    private readonly long _ttlMs = 2_000L * gateway.Value.HeartbeatSeconds;
    private readonly ConcurrentDictionary<string, long> _written = new(StringComparer.Ordinal);

    private RedisKey KeyOf(string user) => redis.Key("presence:" + user);

    public ValueTask<bool> RefreshAsync(string user, long nowMs)
    {
        var refreshed = _local.RefreshAsync(user, nowMs);
        if (!refreshed.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("the in-memory presence store completes at once");
        }

        if (refreshed.Result)
        {
            return CameOnlineHereAsync(user, nowMs);
        }

        if (!_written.TryGetValue(user, out var written) || nowMs - written > _ttlMs / 3)
        {
            _written[user] = nowMs;
            _ = WriteAsync(user, nowMs, get: false); // refreshed in the background; the frame does not wait
        }

        return ValueTask.FromResult(false);
    }

    /// <summary>Online here now; online for everyone only if no other node had them online already.</summary>
    private async ValueTask<bool> CameOnlineHereAsync(string user, long nowMs)
    {
        _written[user] = nowMs;
        return await WriteAsync(user, nowMs, get: true) is null;
    }

    /// <summary>Writes the user's presence; with <paramref name="get"/>, returns what was there (null: nobody had them online).</summary>
    private async Task<string?[]?> WriteAsync(string user, long nowMs, bool get)
    {
        try
        {
            var value = nowMs.ToString(CultureInfo.InvariantCulture);
            if (get)
            {
                var before = await redis.Database.StringSetAndGetAsync(KeyOf(user), value, TimeSpan.FromMilliseconds(_ttlMs));
                return before.IsNull ? null : [before.ToString()];
            }

            await redis.Database.StringSetAsync(KeyOf(user), value, TimeSpan.FromMilliseconds(_ttlMs));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            // This node's view stands until Redis answers again.
        }

        return null;
    }

    public async ValueTask<bool> RemoveAsync(string user)
    {
        var local = await _local.RemoveAsync(user);
        _written.TryRemove(user, out _);
        try
        {
            // Only called once the router says no device of the user is online anywhere.
            return await redis.Database.KeyDeleteAsync(KeyOf(user)) || local;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return local;
        }
    }

    public async ValueTask<bool> IsOnlineAsync(string user, long nowMs)
    {
        if (await _local.IsOnlineAsync(user, nowMs))
        {
            return true;
        }

        try
        {
            return await redis.Database.KeyExistsAsync(KeyOf(user));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return false;
        }
    }

    public async ValueTask<IReadOnlyList<(string User, long LastRefresh)>> ExpireAsync(long nowMs)
    {
        var expired = await _local.ExpireAsync(nowMs);
        if (expired.Count == 0)
        {
            return expired;
        }

        var offline = new List<(string, long)>(expired.Count);
        foreach (var (user, lastRefresh) in expired)
        {
            _written.TryRemove(user, out _);
            try
            {
                var shared = await redis.Database.StringGetAsync(KeyOf(user));
                if (!shared.IsNull && long.TryParse(shared.ToString(), CultureInfo.InvariantCulture, out var elsewhere) && elsewhere > lastRefresh)
                {
                    continue; // another node has refreshed them since: still online there
                }

                await redis.Database.KeyDeleteAsync(KeyOf(user));
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
            }

            offline.Add((user, lastRefresh));
        }

        return offline;
    }
}
