using System.Globalization;
using StackExchange.Redis;
using Switchboard.Server.Abuse;

namespace Switchboard.Server.Cluster;

/// <summary>
/// The abuse limits' buckets shared by every node of a cluster: one Redis hash per key (tokens and when they were
/// counted), refilled by arithmetic in a Lua script on Redis's own clock, so a client that spreads its attempts
/// over the nodes is limited as one. A bucket lives only while it is not full (its TTL is the time it takes to
/// fill). When Redis cannot be reached, this node's own buckets stand in (each node then limits on its own).
/// </summary>
internal sealed class RedisBuckets(RedisSessionRouter redis, string limit, BucketOptions options, int maxKeys) : IBucketSet
{
    // KEYS[1] the bucket; ARGV: burst, tokens per ms, count, mode (take | wait | refund).
    private const string Script = """
        local burst = tonumber(ARGV[1])
        local per_ms = tonumber(ARGV[2])
        local count = tonumber(ARGV[3])
        local t = redis.call('TIME')
        local now = t[1] * 1000 + math.floor(t[2] / 1000)
        local b = redis.call('HMGET', KEYS[1], 't', 'l')
        local tokens = tonumber(b[1]) or burst
        local last = tonumber(b[2]) or now
        tokens = math.min(burst, tokens + math.max(0, now - last) * per_ms)
        local wait = 0
        if ARGV[4] == 'refund' then
            tokens = math.min(burst, tokens + 1)
        else
            if tokens < count then wait = math.max(1, math.ceil((count - tokens) / per_ms)) end
            if ARGV[4] == 'take' and wait == 0 then tokens = tokens - count end
        end
        if tokens >= burst then
            redis.call('DEL', KEYS[1])
        else
            redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', now)
            redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / per_ms) + 1000)
        end
        return wait
        """;

    private readonly KeyedBuckets _fallback = new(options, maxKeys);
    private readonly string _perMs = (options.PerMinute / 60_000).ToString("R", CultureInfo.InvariantCulture);

    public int Count => _fallback.Count;

    private RedisKey KeyOf(string key) => redis.Key($"abuse:{limit}:{key}");

    private async ValueTask<long?> RunAsync(string key, int count, string mode)
    {
        try
        {
            var result = await redis.Database.ScriptEvaluateAsync(Script, [KeyOf(key)], [options.Burst, _perMs, Math.Min(count, options.Burst), mode]);
            return (long)result;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return null;
        }
    }

    public async ValueTask<long> WaitAsync(string key, int count = 1) =>
        await RunAsync(key, count, "wait") ?? _fallback.Wait(key, count);

    public async ValueTask<long> TryTakeAsync(string key, int count = 1) =>
        await RunAsync(key, count, "take") ?? _fallback.TryTake(key, count);

    public async ValueTask RefundAsync(string key)
    {
        if (await RunAsync(key, 1, "refund") is null)
        {
            _fallback.Refund(key);
        }
    }

    public void Sweep() => _fallback.Sweep();
}

/// <summary>Every limit's buckets in Redis, shared by the nodes.</summary>
internal sealed class RedisBucketSets(RedisSessionRouter redis) : IBucketSets
{
    public IBucketSet Create(string limit, BucketOptions options, int maxKeys) => new RedisBuckets(redis, limit, options, maxKeys);
}
