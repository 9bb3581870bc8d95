namespace Switchboard.Protocol;

/// <summary>
/// Time-ordered 63-bit ids, snowflake style: 41 bits of milliseconds since 2024-01-01 UTC (about 69 years),
/// 10 bits of node id (1,024 nodes), 12 bits of sequence within a millisecond (4,096 ids per ms per node).
/// Thread-safe; never goes backwards even if the wall clock does.
/// </summary>
internal sealed class IdGenerator
{
    /// <summary>2024-01-01T00:00:00Z in Unix milliseconds.</summary>
    public const long Epoch = 1_704_067_200_000;
    private const int NodeBits = 10;
    private const int SequenceBits = 12;
    private const long MaxSequence = (1L << SequenceBits) - 1;

    private readonly long _node;
    private readonly TimeProvider _time;
    private long _last; // last id issued

    /// <summary>Creates a generator for the given node (0–1023).</summary>
    public IdGenerator(int node = 0, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(node);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(node, (1 << NodeBits) - 1);
        _node = node;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The next id; strictly greater than every id issued before by this generator.</summary>
    public long Next()
    {
        while (true)
        {
            var last = Volatile.Read(ref _last);
            var ms = _time.GetUtcNow().ToUnixTimeMilliseconds() - Epoch;
            var candidate = (ms << (NodeBits + SequenceBits)) | (_node << SequenceBits);
            if (candidate <= last)
            {
                // Same millisecond (or the clock stepped back): bump the sequence; if it overflows, the id
                // borrows from the next millisecond, which keeps ids strictly increasing.
                var seq = last & MaxSequence;
                candidate = seq < MaxSequence
                    ? last + 1
                    : (((last >> (NodeBits + SequenceBits)) + 1) << (NodeBits + SequenceBits)) | (_node << SequenceBits);
            }

            if (Interlocked.CompareExchange(ref _last, candidate, last) == last)
            {
                return candidate;
            }
        }
    }

    /// <summary>The Unix millisecond time encoded in an id.</summary>
    public static long TimestampOf(long id) => (id >> (NodeBits + SequenceBits)) + Epoch;
}
