namespace Switchboard.Server.Fanout;

/// <summary>Settings of event fanout, bound from <c>Switchboard:Fanout</c>.</summary>
public sealed class FanoutOptions
{
    /// <summary>
    /// Recipients up to which an event is delivered inline, right after its commit. Larger groups go to the
    /// async queue so one big post never holds up the group-commit writer.
    /// </summary>
    public int SyncThreshold { get; set; } = 256;

    /// <summary>Async fanout workers; a conversation always maps to the same one, which keeps its order.</summary>
    public int Workers { get; set; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>Members looked up per step when paging through a large group.</summary>
    public int PageSize { get; set; } = 256;

    /// <summary>Events waiting per worker before the writer is made to wait (backpressure, bounded memory).</summary>
    public int QueueCapacity { get; set; } = 8192;

    /// <summary>Largest group, counting the creator.</summary>
    public int MaxGroupMembers { get; set; } = 1024;

    internal void Validate()
    {
        if (SyncThreshold < 0 || Workers is < 1 or > 256 || PageSize < 1 || QueueCapacity < 1)
        {
            throw new InvalidOperationException("Switchboard:Fanout: SyncThreshold ≥ 0, Workers 1–256, PageSize ≥ 1, QueueCapacity ≥ 1.");
        }

        if (MaxGroupMembers is < 2 or > 100_000)
        {
            throw new InvalidOperationException("Switchboard:Fanout:MaxGroupMembers must be between 2 and 100000.");
        }
    }
}
