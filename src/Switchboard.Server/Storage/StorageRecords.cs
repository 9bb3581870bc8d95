namespace Switchboard.Server.Storage;

/// <summary>
/// One stored event of a conversation, as the store keeps it: no wire framing, no rules. <see cref="E2ee"/> and
/// <see cref="System"/> are JSON text, kept as the client or the server wrote them.
/// </summary>
internal sealed class EventRecord
{
    public required string Conv { get; init; }
    public required long Seq { get; init; }
    public required long Id { get; init; }
    public required long Ts { get; init; }
    public required string Sender { get; init; }
    public required int Dev { get; init; }
    public required string Kind { get; init; }
    public required string Cid { get; init; }
    public string? Body { get; init; }
    public string? E2ee { get; init; }
    public long? ReplyTo { get; init; }
    public long? Target { get; init; }
    public string? System { get; init; }
}

/// <summary>What the (sender, cid) index holds: where the event with that cid was stored.</summary>
internal readonly record struct CidRecord(string Conv, long Seq, long Id, long Ts);

/// <summary>A user's membership of a conversation: role, and the range of seqs they may see.</summary>
/// <param name="JoinedSeq">The event that (last) added the user; 1 in a direct conversation.</param>
/// <param name="RemovedSeq">The event that removed the user from a group, else null.</param>
internal sealed record MemberRecord(string Conv, string User, string Role, long JoinedSeq, long? RemovedSeq, long JoinedTs);

/// <summary>A group as stored: its name, when it was made, and every member record, current and former.</summary>
internal sealed record GroupRecord(string Conv, string Name, long Created, IReadOnlyList<MemberRecord> Members);

/// <summary>A user's standing in one conversation, with the conversation's last seq.</summary>
/// <param name="FirstSeq">First seq the user may see (1 in a direct conversation, the join event in a group).</param>
/// <param name="RemovedSeq">Seq of the user's removal from a group, else null.</param>
internal sealed record Membership(string Conv, string Kind, string Role, long FirstSeq, long? RemovedSeq, long LastSeq)
{
    public bool IsCurrent => RemovedSeq is null;

    /// <summary>Last seq this member may see.</summary>
    public long LastVisible => RemovedSeq is { } removed ? Math.Min(removed, LastSeq) : LastSeq;

    public string ListKind => Kind == "group" ? "group" : "direct";
}

/// <summary>A member's cumulative cursors in a conversation, and when one of them last moved.</summary>
internal readonly record struct MemberCursor(string User, long Delivered, long Read, long Updated);

/// <summary>Key of a device's replay position in one conversation.</summary>
internal readonly record struct DeviceCursorKey(string User, int Device, string Conv);

/// <summary>Key of a member's receipt cursors in one conversation.</summary>
internal readonly record struct MemberCursorKey(string Conv, string User);

/// <summary>
/// Everything one group commit writes, applied by the store atomically and made durable before
/// <see cref="IMessageStore.CommitAsync"/> completes. Cursors are high-water marks already raised by the caller:
/// the last value given for a key is the one written.
/// </summary>
internal sealed class StoreBatch
{
    /// <summary>New events, each at a seq the caller assigned; the store keeps each conversation's last seq from them.</summary>
    public List<EventRecord> Events { get; } = [];

    /// <summary>Member records to write (added, re-added, removed, role changed), by (conv, user).</summary>
    public List<MemberRecord> Members { get; } = [];

    /// <summary>Groups to create or rename.</summary>
    public List<(string Conv, string Name, long Created)> Groups { get; } = [];

    public Dictionary<DeviceCursorKey, long> DeviceCursors { get; } = [];

    public Dictionary<MemberCursorKey, MemberCursor> MemberCursors { get; } = [];

    /// <summary>
    /// Whether the batch must be fsync'd before it counts as committed: anything but cursor moves. A batch of
    /// cursor moves alone is written without an fsync of its own; it survives a crash of the process and is made
    /// durable by the next batch that is fsync'd.
    /// </summary>
    public bool MustSync => Events.Count > 0 || Members.Count > 0 || Groups.Count > 0;

    public bool IsEmpty => Events.Count == 0 && Members.Count == 0 && Groups.Count == 0 && DeviceCursors.Count == 0 && MemberCursors.Count == 0;

    public void Clear()
    {
        Events.Clear();
        Members.Clear();
        Groups.Clear();
        DeviceCursors.Clear();
        MemberCursors.Clear();
    }
}
