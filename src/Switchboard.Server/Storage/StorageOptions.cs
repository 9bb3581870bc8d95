namespace Switchboard.Server.Storage;

/// <summary>Settings of the message store, bound from <c>Switchboard:Storage</c>.</summary>
public sealed class StorageOptions
{
    /// <summary>
    /// Most commands one group commit takes. Large enough that one fsync (about 150 µs here) is shared by
    /// thousands of messages at peak, small enough that one batch stays a few milliseconds.
    /// </summary>
    public int MaxBatch { get; set; } = 2048;

    /// <summary>
    /// Commands waiting for the sequencer before senders are made to wait (backpressure instead of memory).
    /// </summary>
    public int QueueCapacity { get; set; } = 16384;

    /// <summary>
    /// Batches of up to this many commands are written and published by the thread that decided them when no
    /// earlier batch is still on its way: at light load a message then wakes one thread instead of three. Larger
    /// batches (load) go through the pipeline, where writing one batch overlaps deciding the next. 0: always
    /// the pipeline.
    /// </summary>
    public int InlineCommitBatch { get; set; } = 64;

    /// <summary>
    /// Least time between the starts of two fsyncs while writes keep coming, in microseconds. Every fsync writes at
    /// least the log's last page (4 KiB) again, so at a few thousand sends a second, one fsync per send would write
    /// several KiB per message. A batch that finds the previous fsync more recent than this waits for the rest of
    /// the interval, gathering the sends that arrive meanwhile; a send after a quiet spell is written at once.
    /// 0: no pacing (an fsync as soon as the previous one is done).
    /// </summary>
    public int SyncIntervalMicroseconds { get; set; } = 1000;

    /// <summary>A batch waits for <see cref="SyncIntervalMicroseconds"/> only while fewer than this many writes are queued.</summary>
    public int SyncIntervalBatch { get; set; } = 4;

    /// <summary>
    /// Whether other processes append to the same store (cluster mode; set by the host, not a setting). Then the
    /// heads of a batch's conversations are read from the store before it is decided, and a batch part refused
    /// because another writer moved a head is decided again.
    /// </summary>
    internal bool SharedWriters { get; set; }

    /// <summary>Days of history kept; older events are purged by a background job.</summary>
    public int RetentionDays { get; set; } = 30;

    /// <summary>
    /// The store's read cache in MiB (RocksDB's block cache, shared by all data, filters and indexes included).
    /// Recent events, cursors and the bloom filters of the cid index live here; the OS page cache holds more.
    /// </summary>
    public int BlockCacheMegabytes { get; set; } = 32;

    /// <summary>
    /// MiB of memtables, all column families together, before they are flushed to disk. Larger means fewer, larger
    /// flushes and less compaction (fewer bytes written per message), at the cost of memory.
    /// </summary>
    public int WriteBufferMegabytes { get; set; } = 64;

    /// <summary>Files the store keeps open; the rest of the process's 20,000 descriptors are sockets.</summary>
    public int MaxOpenFiles { get; set; } = 1024;

    /// <summary>How often the purge job runs.</summary>
    public int PurgeIntervalMinutes { get; set; } = 60;

    internal void Validate()
    {
        if (MaxBatch is < 1 or > 100_000)
        {
            throw new InvalidOperationException("Switchboard:Storage:MaxBatch must be between 1 and 100000.");
        }

        if (InlineCommitBatch < 0)
        {
            throw new InvalidOperationException("Switchboard:Storage:InlineCommitBatch cannot be negative.");
        }

        if (SyncIntervalMicroseconds is < 0 or > 100_000)
        {
            throw new InvalidOperationException("Switchboard:Storage:SyncIntervalMicroseconds must be between 0 and 100000.");
        }

        if (SyncIntervalBatch < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:SyncIntervalBatch must be at least 1.");
        }

        if (QueueCapacity < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:QueueCapacity must be at least 1.");
        }

        if (RetentionDays < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:RetentionDays must be at least 1.");
        }

        if (BlockCacheMegabytes is < 1 or > 65_536 || WriteBufferMegabytes is < 8 or > 65_536)
        {
            throw new InvalidOperationException("Switchboard:Storage: BlockCacheMegabytes must be 1–65536 and WriteBufferMegabytes 8–65536.");
        }

        if (MaxOpenFiles is < 64 and not -1)
        {
            throw new InvalidOperationException("Switchboard:Storage:MaxOpenFiles must be at least 64 (or -1: no limit).");
        }

        if (PurgeIntervalMinutes < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:PurgeIntervalMinutes must be at least 1.");
        }
    }
}
