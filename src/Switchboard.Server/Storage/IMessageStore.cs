using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>
/// The durable log of conversations. Writes go through <see cref="SubmitAsync"/> to a group-commit writer that
/// checks, sequences and persists them, then tells the <see cref="ICommitObserver"/>; reads go straight to the store.
/// </summary>
internal interface IMessageStore
{
    /// <summary>Queues a command for the next group commit; waits only when the writer's queue is full.</summary>
    ValueTask SubmitAsync(StoreCommand command, CancellationToken cancellationToken);

    AccessResult ResolveAccess(string conv, string user);

    /// <summary>Events with <c>after &lt; seq ≤ upTo</c>, oldest first, at most <paramref name="limit"/>.</summary>
    List<MsgFrame> ReadAfter(string conv, long after, long upTo, int limit);

    /// <summary>Events with <c>minSeq ≤ seq &lt; before</c> and <c>ts ≥ minTs</c>, newest first, at most <paramref name="limit"/>.</summary>
    List<MsgFrame> ReadBefore(string conv, long before, long minSeq, long minTs, int limit);

    List<Membership> GetMemberships(string user);

    List<string> CurrentMembers(string conv);

    /// <summary>The first text or media event of <paramref name="author"/> after <paramref name="after"/>, if any.</summary>
    long? NextOwnMessage(string conv, string author, long after);

    /// <summary>A direct conversation with at least one event, or current membership of the same group.</summary>
    bool SharesConversation(string a, string b);

    Dictionary<string, long> GetDeviceCursors(string user, int device);

    List<MemberCursor> GetMemberCursors(string conv);

    /// <summary>Others' text and media events in <c>(after, upTo]</c>.</summary>
    long CountUnread(string conv, string user, long after, long upTo);

    /// <summary>Deletes events older than <paramref name="olderThanTs"/>; returns how many.</summary>
    int Purge(long olderThanTs, int maxRows);
}
