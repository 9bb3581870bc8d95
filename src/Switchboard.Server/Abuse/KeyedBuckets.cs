using System.Collections.Concurrent;

namespace Switchboard.Server.Abuse;

/// <summary>
/// Leaky buckets by key (an address, an account), refilled by arithmetic on access rather than by a timer, and
/// forgotten once full again. At most <c>maxKeys</c> are tracked; past that, new keys share one bucket, so a flood
/// of addresses costs bounded memory and is limited as one. (<c>PartitionedRateLimiter</c> keeps a limiter per key
/// with no bound on the keys and replenishes them on a timer; here every key is a few dozen bytes.)
/// </summary>
internal sealed class KeyedBuckets(BucketOptions options, int maxKeys) : IBucketSet
{
    ValueTask<long> IBucketSet.WaitAsync(string key, int count) => ValueTask.FromResult(Wait(key, count));

    ValueTask<long> IBucketSet.TryTakeAsync(string key, int count) => ValueTask.FromResult(TryTake(key, count));

    ValueTask IBucketSet.RefundAsync(string key)
    {
        Refund(key);
        return ValueTask.CompletedTask;
    }

    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private readonly Bucket _shared = new(options.Burst);
    private readonly double _perMs = options.PerMinute / 60_000;
    private readonly int _burst = options.Burst;

    public int Count => _buckets.Count;

    /// <summary>Milliseconds until <paramref name="count"/> could be taken; 0 when it could now. Takes nothing.</summary>
    public long Wait(string key, int count = 1)
    {
        var bucket = _buckets.GetValueOrDefault(key) ?? (_buckets.Count >= maxKeys ? _shared : null);
        if (bucket is null)
        {
            return 0; // an unknown key is a full bucket
        }

        lock (bucket)
        {
            return WaitLocked(bucket, Math.Min(count, _burst), Environment.TickCount64);
        }
    }

    /// <summary>Takes <paramref name="count"/> (at most the burst); returns 0, or the milliseconds to wait when there are not enough.</summary>
    public long TryTake(string key, int count = 1)
    {
        var bucket = _buckets.GetValueOrDefault(key) ?? (_buckets.Count >= maxKeys ? _shared : _buckets.GetOrAdd(key, static (_, burst) => new Bucket(burst), _burst));
        count = Math.Min(count, _burst);
        lock (bucket)
        {
            var now = Environment.TickCount64;
            var wait = WaitLocked(bucket, count, now);
            if (wait == 0)
            {
                bucket.Tokens -= count;
            }

            return wait;
        }
    }

    /// <summary>Gives back one taken earlier (an attempt that turned out not to count).</summary>
    public void Refund(string key)
    {
        if (_buckets.GetValueOrDefault(key) is { } bucket)
        {
            lock (bucket)
            {
                bucket.Tokens = Math.Min(_burst, bucket.Tokens + 1);
            }
        }
    }

    /// <summary>Forgets the buckets that have filled up again (an unknown key is a full bucket).</summary>
    public void Sweep()
    {
        var now = Environment.TickCount64;
        foreach (var (key, bucket) in _buckets)
        {
            lock (bucket)
            {
                if (WaitLocked(bucket, _burst, now) == 0)
                {
                    _buckets.TryRemove(new KeyValuePair<string, Bucket>(key, bucket));
                }
            }
        }
    }

    private long WaitLocked(Bucket bucket, int count, long now)
    {
        bucket.Tokens = Math.Min(_burst, bucket.Tokens + ((now - bucket.LastMs) * _perMs));
        bucket.LastMs = now;
        return bucket.Tokens >= count ? 0 : Math.Max(1, (long)Math.Ceiling((count - bucket.Tokens) / _perMs));
    }

    private sealed class Bucket(int burst)
    {
        public double Tokens = burst;
        public long LastMs = Environment.TickCount64;
    }
}

/// <summary>A set of buckets by key: this process's own (<see cref="KeyedBuckets"/>), or shared by a cluster's nodes.</summary>
internal interface IBucketSet
{
    /// <summary>Buckets held in this process (for /metrics).</summary>
    int Count { get; }

    /// <summary>Milliseconds until <paramref name="count"/> could be taken; 0 when it could now. Takes nothing.</summary>
    ValueTask<long> WaitAsync(string key, int count = 1);

    /// <summary>Takes <paramref name="count"/> (at most the burst); returns 0, or the milliseconds to wait when there are not enough.</summary>
    ValueTask<long> TryTakeAsync(string key, int count = 1);

    /// <summary>Gives back one taken earlier.</summary>
    ValueTask RefundAsync(string key);

    /// <summary>Forgets what this process holds of buckets that filled up again.</summary>
    void Sweep();
}

/// <summary>Makes the bucket sets of the limits; the default keeps them in this process.</summary>
internal interface IBucketSets
{
    IBucketSet Create(string limit, BucketOptions options, int maxKeys);
}
