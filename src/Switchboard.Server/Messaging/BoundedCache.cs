using System.Collections.Concurrent;
using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Switchboard.Server.Messaging;

/// <summary>
/// A cache that holds at most <c>capacity</c> entries, for one thread (the sequencer's). Two generations: new
/// entries go into the young one; when it is half the capacity the old one is dropped and the young one becomes
/// old; a hit in the old one moves the entry back into the young. Entries used within the last half-capacity
/// insertions stay, which is what a least-recently-used cache keeps, at the cost of a dictionary lookup or two and
/// no per-entry bookkeeping. The store is the truth: a miss costs one read.
/// </summary>
internal sealed class BoundedCache<TKey, TValue>(int capacity, IEqualityComparer<TKey>? comparer = null)
    where TKey : notnull
{
    private readonly int _half = Math.Max(1, capacity / 2);
    private Dictionary<TKey, TValue> _young = new(comparer);
    private Dictionary<TKey, TValue> _old = new(comparer);

    public int Count => _young.Count + _old.Count;

    public bool TryGet(TKey key, out TValue value)
    {
        if (_young.TryGetValue(key, out value!))
        {
            return true;
        }

        if (_old.Remove(key, out value!))
        {
            Set(key, value);
            return true;
        }

        return false;
    }

    public void Set(TKey key, TValue value)
    {
        _young[key] = value;
        if (_young.Count >= _half)
        {
            // The old generation is dropped: cleared and reused as the new young one, keeping its arrays, so a
            // cache that turns over allocates nothing once it has reached its size.
            (_old, _young) = (_young, _old);
            _young.Clear();
        }
    }

    public void Remove(TKey key)
    {
        _young.Remove(key);
        _old.Remove(key);
    }

    public void Clear()
    {
        _young.Clear();
        _old.Clear();
    }
}

/// <summary>The same two-generation bound as <see cref="BoundedCache{TKey, TValue}"/>, safe for many readers and writers.</summary>
internal sealed class ConcurrentBoundedCache<TKey, TValue>(int capacity, IEqualityComparer<TKey>? comparer = null)
    where TKey : notnull
{
    private readonly int _half = Math.Max(1, capacity / 2);
    private readonly Lock _rotate = new();
    private Generation _young = new(comparer);
    private Generation _old = new(comparer);

    public int Count => Volatile.Read(ref _young).Count + Volatile.Read(ref _old).Count;

    public bool TryGet(TKey key, out TValue value)
    {
        if (Volatile.Read(ref _young).Map.TryGetValue(key, out value!))
        {
            return true;
        }

        if (Volatile.Read(ref _old).Map.TryGetValue(key, out value!))
        {
            TryAdd(key, value);
            return true;
        }

        return false;
    }

    /// <summary>Adds the entry unless one is cached (a loaded value must not overwrite a newer published one).</summary>
    public void TryAdd(TKey key, TValue value)
    {
        var young = Volatile.Read(ref _young);
        if (young.Map.TryAdd(key, value))
        {
            Added(young);
        }
    }

    public void Set(TKey key, TValue value)
    {
        var young = Volatile.Read(ref _young);
        young.Map.AddOrUpdate(key, value, (_, _) => value);
        Volatile.Read(ref _old).Map.TryRemove(key, out _);
        Added(young);
    }

    public void Remove(TKey key)
    {
        Volatile.Read(ref _young).Map.TryRemove(key, out _);
        Volatile.Read(ref _old).Map.TryRemove(key, out _);
    }

    private void Added(Generation young)
    {
        if (Interlocked.Increment(ref young.Count) < _half)
        {
            return;
        }

        lock (_rotate)
        {
            if (_young == young)
            {
                _old = young;
                Volatile.Write(ref _young, new Generation(young.Map.Comparer));
            }
        }
    }

    private sealed class Generation(IEqualityComparer<TKey>? comparer)
    {
        public readonly ConcurrentDictionary<TKey, TValue> Map = new(comparer);
        public int Count;
    }
}

/// <summary>
/// A cache key that is a 128-bit hash (XxHash128) of the key's strings, not the strings. A cache entry keyed by
/// it holds no reference, so a garbage collection neither scans nor copies the cache: with the strings themselves
/// as keys, a cache that turns over (many conversations, each touched rarely) made every new entry survive into
/// the older generations, and at 10,000 sends a second each gen0 collection promoted about 2 MB and paused the
/// process for 6–12 ms. Two different keys share a hash with a probability of about n²/2¹²⁹: 10⁻²⁷ for a
/// million entries.
/// </summary>
internal readonly record struct CacheKey(UInt128 Hash)
{
    private const int StackChars = 256;

    public static CacheKey Of(string key) => new(XxHash128.HashToUInt128(MemoryMarshal.AsBytes(key.AsSpan())));

    public static CacheKey Of(string first, string second)
    {
        var length = first.Length + 1 + second.Length;
        var chars = length <= StackChars ? stackalloc char[length] : new char[length];
        first.CopyTo(chars);
        chars[first.Length] = '\0'; // a separator no name contains
        second.CopyTo(chars[(first.Length + 1)..]);
        return new(XxHash128.HashToUInt128(MemoryMarshal.AsBytes(chars)));
    }

    public static CacheKey Of(string first, int number, string second)
    {
        var length = first.Length + 3 + second.Length;
        var chars = length <= StackChars ? stackalloc char[length] : new char[length];
        first.CopyTo(chars);
        chars[first.Length] = '\0';
        chars[first.Length + 1] = (char)(number >> 16);
        chars[first.Length + 2] = (char)number;
        second.CopyTo(chars[(first.Length + 3)..]);
        return new(XxHash128.HashToUInt128(MemoryMarshal.AsBytes(chars)));
    }
}
