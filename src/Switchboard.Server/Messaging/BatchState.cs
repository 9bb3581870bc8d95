using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// What the rules decided for one batch and what it writes: seen by later commands and later batches until the
/// batch is durable (then its seqs and cursors move into the caches) or has failed (then it is dropped).
/// </summary>
internal sealed class BatchState
{
    /// <summary>The sequencer's count of failures when this batch was decided; a failure fails every batch of its epoch after it.</summary>
    public int Epoch { get; private set; }

    public StoreBatch Writes { get; } = new();

    /// <summary>Last seq per conversation after this batch.</summary>
    public Dictionary<string, long> Seqs { get; } = new(StringComparer.Ordinal);

    /// <summary>Acks by (sender, cid), so a repeat within the batch or the next ones is a duplicate.</summary>
    public Dictionary<(string Sender, string Cid), AckFrame> Cids { get; } = [];

    public Dictionary<(string Conv, long Seq), EventRecord> Events { get; } = [];

    /// <summary>Targets deleted by this batch.</summary>
    public HashSet<(string Conv, long Target)> Deletes { get; } = [];

    /// <summary>Group memberships as this batch leaves them, published once it is durable.</summary>
    public Dictionary<string, GroupSnapshot> Groups { get; } = new(StringComparer.Ordinal);

    /// <summary>Empties the state for another batch; its dictionaries keep their size, so a busy sequencer allocates none.</summary>
    public BatchState Reset(int epoch)
    {
        Epoch = epoch;
        Writes.Clear();
        Seqs.Clear();
        Cids.Clear();
        Events.Clear();
        Deletes.Clear();
        Groups.Clear();
        return this;
    }
}
