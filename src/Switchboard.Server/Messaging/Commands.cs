using System.Text.Json;
using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>Who a write comes from: a connected device (answered on its socket) or an HTTP call (answered in its response).</summary>
internal interface ICommandOrigin
{
    string User { get; }
    int Device { get; }
}

/// <summary>The acting user and device of an HTTP call that writes (group changes).</summary>
internal sealed record HttpOrigin(string User, int Device) : ICommandOrigin;

/// <summary>Something the sequencer checks, orders and commits in its next batch.</summary>
internal abstract class WriteCommand
{
    public required ICommandOrigin Origin { get; init; }
    public required string Conv { get; init; }

    /// <summary>Set when the command is refused: an error code from <see cref="ErrorCodes"/>.</summary>
    public string? ErrorCode { get; private set; }
    public string? ErrorMessage { get; private set; }
    public long RetryAfterMs { get; set; }

    /// <summary>Users who are current members of the conversation, filled for routing after commit.</summary>
    public IReadOnlyList<string> Members { get; set; } = [];

    /// <summary>Completed after the batch is committed and its results handed out; for callers that wait (HTTP).</summary>
    public TaskCompletionSource? Completion { get; init; }

    /// <summary>How many times the command was refused because another writer moved its conversation's head first.</summary>
    public int Attempts { get; set; }

    /// <summary>How many times it was decided again because a batch before its own failed.</summary>
    public int Redecisions { get; set; }

    /// <summary>Forgets what deciding it produced, so it can be decided again in a later batch.</summary>
    public virtual void Reset()
    {
        ErrorCode = null;
        ErrorMessage = null;
        RetryAfterMs = 0;
        Members = [];
    }

    public void Fail(string code, string message)
    {
        ErrorCode = code;
        ErrorMessage = message;
    }

    /// <summary>The batch could not be made durable: whatever this command produced is gone.</summary>
    public virtual void Unwind() => Fail(ErrorCodes.Unavailable, "the event could not be made durable; retry with the same cid");
}

internal enum GroupOp
{
    Create,
    Add,
    Remove,
    Rename,
    SetRole,

    /// <summary>The actor joins, accepting an invite (the caller has checked and used it).</summary>
    Join,
}

/// <summary>A group change: appended as a <c>system</c> event, durable before the HTTP answer.</summary>
internal sealed class GroupCommand : WriteCommand
{
    public required GroupOp Op { get; init; }
    public string? Name { get; init; }
    public IReadOnlyList<string> Users { get; init; } = [];
    public string? Role { get; init; }
    public int MaxMembers { get; init; }

    /// <summary>The stored system event (null when the call changed nothing).</summary>
    public EventRecord? Event { get; set; }

    /// <summary>The group after the change.</summary>
    public GroupSnapshot? Group { get; set; }

    /// <summary>For a create: the new group's id.</summary>
    public string? CreatedConv { get; set; }

    /// <summary>Members who left or were removed by this event; they receive it too.</summary>
    public IReadOnlyList<string> Departed { get; set; } = [];

    public override void Unwind()
    {
        base.Unwind();
        Event = null;
        Group = null;
    }

    public override void Reset()
    {
        base.Reset();
        Event = null;
        Group = null;
        CreatedConv = null;
        Departed = [];
    }
}

/// <summary>
/// A notice from the server about the origin user (an identity key that changed): a <c>system</c> event in a
/// conversation the user is a current member of; nothing when they are not, or the direct conversation has no event.
/// </summary>
internal sealed class NoticeCommand : WriteCommand
{
    public required SystemInfo System { get; init; }

    /// <summary>The stored system event (null when nothing was appended).</summary>
    public EventRecord? Event { get; set; }

    public override void Unwind()
    {
        base.Unwind();
        Event = null;
    }

    public override void Reset()
    {
        base.Reset();
        Event = null;
    }
}

/// <summary>A send, edit or delete: an event to append to a conversation.</summary>
internal sealed class AppendCommand : WriteCommand
{
    public required string Cid { get; init; }
    public required string Kind { get; init; }
    public string? Body { get; init; }
    public JsonElement? E2ee { get; init; }
    public long? ReplyTo { get; init; }
    public long? Target { get; init; }

    /// <summary>
    /// A refusal found before the sequencer (size): it applies only if the cid is not a duplicate, because the
    /// protocol checks duplicates before size.
    /// </summary>
    public string? PendingErrorCode { get; init; }
    public string? PendingErrorMessage { get; init; }

    public RateGate? Rate { get; init; }

    /// <summary><see cref="System.Diagnostics.Stopwatch"/> timestamp of the frame's arrival, for latency metrics.</summary>
    public long ReceivedAt { get; init; }

    /// <summary>The answer for the sender.</summary>
    public AckFrame? Ack { get; set; }

    /// <summary>With <c>devices_changed</c> (HTTP sends): the devices the message must be encrypted for.</summary>
    public IReadOnlyList<Protocol.DeviceAddress>? Recipients { get; init; }

    /// <summary>The new event (null for a duplicate).</summary>
    public EventRecord? Event { get; set; }

    public override void Unwind()
    {
        base.Unwind();
        Ack = null;
        Event = null;
    }

    public override void Reset()
    {
        base.Reset();
        Ack = null;
        Event = null;
    }
}

/// <summary>A <c>recv</c> or <c>read</c> cursor move.</summary>
internal sealed class CursorCommand : WriteCommand
{
    public required long Seq { get; init; }
    public required bool IsRead { get; init; }

    /// <summary>The member's delivered cursor moved to this seq.</summary>
    public long? DeliveredAdvancedTo { get; set; }

    /// <summary>The member's read cursor moved to this seq.</summary>
    public long? ReadAdvancedTo { get; set; }

    public override void Unwind()
    {
        base.Unwind();
        DeliveredAdvancedTo = ReadAdvancedTo = null;
    }

    public override void Reset()
    {
        base.Reset();
        DeliveredAdvancedTo = ReadAdvancedTo = null;
    }
}

/// <summary>Told of every batch once it is durable (or failed, with every command refused); acks and deliveries start here.</summary>
internal interface ICommitObserver
{
    void OnCommitted(IReadOnlyList<WriteCommand> batch);
}
