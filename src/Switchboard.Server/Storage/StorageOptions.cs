namespace Switchboard.Server.Storage;

/// <summary>Settings of the message store, bound from <c>Switchboard:Storage</c>.</summary>
public sealed class StorageOptions
{
    /// <summary>
    /// Most commands one group commit takes. Large enough that one fsync (about 150 µs here) is shared by
    /// thousands of messages at peak, small enough that one transaction stays a few milliseconds.
    /// </summary>
    public int MaxBatch { get; set; } = 2048;

    /// <summary>
    /// Commands waiting for the writer before senders are made to wait (backpressure instead of memory).
    /// </summary>
    public int QueueCapacity { get; set; } = 16384;

    /// <summary>Days of history kept; older events are purged by a background job.</summary>
    public int RetentionDays { get; set; } = 30;

    /// <summary>
    /// Seconds a write waits while someone else holds the database's write lock (an operator's sqlite3 shell) before
    /// it fails; a failed group commit answers its senders <c>unavailable</c> and they retry with the same cid.
    /// </summary>
    public int LockTimeoutSeconds { get; set; } = 5;

    /// <summary>How often the purge job runs.</summary>
    public int PurgeIntervalMinutes { get; set; } = 60;

    internal void Validate()
    {
        if (MaxBatch is < 1 or > 100_000)
        {
            throw new InvalidOperationException("Switchboard:Storage:MaxBatch must be between 1 and 100000.");
        }

        if (QueueCapacity < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:QueueCapacity must be at least 1.");
        }

        if (RetentionDays < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:RetentionDays must be at least 1.");
        }

        if (LockTimeoutSeconds is < 1 or > 600)
        {
            throw new InvalidOperationException("Switchboard:Storage:LockTimeoutSeconds must be between 1 and 600.");
        }

        if (PurgeIntervalMinutes < 1)
        {
            throw new InvalidOperationException("Switchboard:Storage:PurgeIntervalMinutes must be at least 1.");
        }
    }
}
