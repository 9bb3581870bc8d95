using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>Who gets the answer to a command once its batch is committed (a socket).</summary>
internal interface ICommandOrigin
{
    string User { get; }
    int Device { get; }
}

/// <summary>A per-sender rate check, run by the writer after the other checks (the protocol's order).</summary>
internal interface IRateGate
{
    /// <summary>Zero when a send may go ahead (and is counted), else milliseconds until it may be retried.</summary>
    long TryTake(long nowMs);
}

/// <summary>Something the group-commit writer does in its next transaction.</summary>
internal abstract class StoreCommand
{
    public required ICommandOrigin Origin { get; init; }
    public required string Conv { get; init; }

    /// <summary>Set by the writer when the command is refused: an error code from <see cref="ErrorCodes"/>.</summary>
    public string? ErrorCode { get; set; }
    public string? ErrorMessage { get; set; }
    public long RetryAfterMs { get; set; }

    /// <summary>Users who are current members of the conversation, filled for routing after commit.</summary>
    public IReadOnlyList<string> Members { get; set; } = [];

    /// <summary>Completed after the batch is committed and the observer has run; for callers that wait (HTTP).</summary>
    public TaskCompletionSource? Completion { get; init; }

    public void Fail(string code, string message)
    {
        ErrorCode = code;
        ErrorMessage = message;
    }
}

/// <summary>
/// Bookkeeping that needs no answer: a device's last connection time, a user's last_seen. Written by the group
/// commit with everything else, so a reconnect storm costs shared fsyncs instead of one each.
/// </summary>
internal sealed class TouchCommand : StoreCommand
{
    /// <summary>Set the device's last_active (when Device is set) or the user's last_seen (when it is not).</summary>
    public int? Device { get; init; }
    public required string User { get; init; }
    public required long Ts { get; init; }
}

/// <summary>Where bookkeeping commands come from: nobody to answer.</summary>
internal sealed record ServerOrigin(string User, int Device) : ICommandOrigin;

/// <summary>The acting user and device of an HTTP call that writes (group changes).</summary>
internal sealed record HttpOrigin(string User, int Device) : ICommandOrigin;

internal enum GroupOp
{
    Create,
    Add,
    Remove,
    Rename,
    SetRole,
}

/// <summary>A group change: appended as a <c>system</c> event, durable before the HTTP answer.</summary>
internal sealed class GroupCommand : StoreCommand
{
    public required GroupOp Op { get; init; }
    public string? Name { get; init; }
    public IReadOnlyList<string> Users { get; init; } = [];
    public string? Role { get; init; }
    public int MaxMembers { get; init; }

    /// <summary>Set by the writer: the stored system event (null when the call changed nothing).</summary>
    public MsgFrame? Event { get; set; }

    /// <summary>Set by the writer: the group after the change.</summary>
    public GroupSnapshot? Group { get; set; }

    /// <summary>Set by the writer for a create: the new group's id.</summary>
    public string? CreatedConv { get; set; }

    /// <summary>Set by the writer: members who left or were removed by this event; they receive it too.</summary>
    public IReadOnlyList<string> Departed { get; set; } = [];
}

/// <summary>A send, edit or delete: an event to append to a conversation.</summary>
internal sealed class AppendCommand : StoreCommand
{
    public required string Cid { get; init; }
    public required string Kind { get; init; }
    public string? Body { get; init; }
    public JsonElement? E2ee { get; init; }
    public long? ReplyTo { get; init; }
    public long? Target { get; init; }

    /// <summary>
    /// A refusal found before the writer (size): it applies only if the cid is not a duplicate, because the
    /// protocol checks duplicates before size.
    /// </summary>
    public string? PendingErrorCode { get; init; }
    public string? PendingErrorMessage { get; init; }

    public IRateGate? Rate { get; init; }

    /// <summary><see cref="System.Diagnostics.Stopwatch"/> timestamp of the frame's arrival, for latency metrics.</summary>
    public long ReceivedAt { get; init; }

    /// <summary>Set by the writer: the answer for the sender.</summary>
    public AckFrame? Ack { get; set; }

    /// <summary>Set by the writer when a new event was stored (null for a duplicate).</summary>
    public MsgFrame? Event { get; set; }
}

/// <summary>A <c>recv</c> or <c>read</c> cursor move.</summary>
internal sealed class CursorCommand : StoreCommand
{
    public required long Seq { get; init; }
    public required bool IsRead { get; init; }

    /// <summary>Set by the writer: the member's delivered cursor moved to this seq.</summary>
    public long? DeliveredAdvancedTo { get; set; }

    /// <summary>Set by the writer: the member's read cursor moved to this seq.</summary>
    public long? ReadAdvancedTo { get; set; }
}

/// <summary>Told of every batch after it is durable; acks and deliveries start here.</summary>
internal interface ICommitObserver
{
    void OnCommitted(IReadOnlyList<StoreCommand> batch);
}

/// <summary>A user's standing in one conversation.</summary>
/// <param name="FirstSeq">First seq the user may see (1 in a direct conversation, the join event in a group).</param>
/// <param name="RemovedSeq">Seq of the user's removal from a group, else null.</param>
internal sealed record Membership(string Conv, string Kind, string Role, long FirstSeq, long? RemovedSeq, long LastSeq)
{
    public bool IsCurrent => RemovedSeq is null;

    /// <summary>Last seq this member may see.</summary>
    public long LastVisible => RemovedSeq is { } removed ? Math.Min(removed, LastSeq) : LastSeq;

    public string ListKind => Kind == "group" ? "group" : "direct";
}

/// <summary>A member's cumulative cursors in a conversation.</summary>
internal sealed record MemberCursor(string User, long Delivered, long Read, long Updated);
