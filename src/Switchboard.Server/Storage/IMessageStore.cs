namespace Switchboard.Server.Storage;

/// <summary>
/// The storage port: persists and reads records, and knows no rules. The domain (<c>Messaging/</c>) decides what
/// may be written and in what order, and assigns every seq; a store only keeps its promises:
/// <list type="bullet">
/// <item>a committed batch is whole and durable (fsync'd) when <see cref="CommitAsync"/> completes, and a failed one
/// left nothing behind; a batch of cursor moves alone (<see cref="StoreBatch.MustSync"/> false) need not be
/// fsync'd, but survives a crash of the process and is durable once a later batch is;</item>
/// <item>events come back per conversation in seq order, and a committed event is found by its (sender, cid) until
/// it is purged;</item>
/// <item>a conversation's last seq never goes back, purges included, so seqs are never reused;</item>
/// <item>nothing read is newer than what was committed.</item>
/// </list>
/// Every method may complete synchronously (the embedded store does); a networked store completes them later.
/// The contract is stated as tests in <c>MessageStoreContract</c>.
/// </summary>
internal interface IMessageStore
{
    /// <summary>Applies a batch atomically and durably. Throws when it could not be made durable; then nothing of it is stored.</summary>
    ValueTask CommitAsync(StoreBatch batch, CancellationToken cancellationToken);

    /// <summary>The conversation's last seq, or null when it has never had an event.</summary>
    ValueTask<long?> GetLastSeqAsync(string conv, CancellationToken cancellationToken = default);

    /// <summary>
    /// Where the sender's event with this cid was stored, or null. With <paramref name="conv"/> (the conversation
    /// the resend names), a store spread over shards looks in that conversation's shard only; the embedded store
    /// always looks everywhere.
    /// </summary>
    ValueTask<CidRecord?> FindCidAsync(string sender, string cid, string? conv = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Several cids at once, each looked up as <see cref="FindCidAsync"/> does with its conversation; the found ones.
    /// A store over shards asks each shard once. One whose part of the store could not be read throws.
    /// </summary>
    async ValueTask<Dictionary<(string Sender, string Cid), CidRecord>> FindCidsAsync(IReadOnlyCollection<(string Sender, string Cid, string Conv)> keys, CancellationToken cancellationToken = default)
    {
        var found = new Dictionary<(string, string), CidRecord>();
        foreach (var (sender, cid, conv) in keys)
        {
            if (await FindCidAsync(sender, cid, conv, cancellationToken) is { } hit)
            {
                found[(sender, cid)] = hit;
            }
        }

        return found;
    }

    /// <summary>Several device cursors at once; keys without one are left out.</summary>
    async ValueTask<Dictionary<DeviceCursorKey, long>> GetDeviceCursorsByKeyAsync(IReadOnlyCollection<DeviceCursorKey> keys, CancellationToken cancellationToken = default)
    {
        var found = new Dictionary<DeviceCursorKey, long>();
        foreach (var key in keys)
        {
            if (await GetDeviceCursorAsync(key, cancellationToken) is { } seq)
            {
                found[key] = seq;
            }
        }

        return found;
    }

    /// <summary>Several member cursors at once; keys without one are left out.</summary>
    async ValueTask<Dictionary<MemberCursorKey, MemberCursor>> GetMemberCursorsByKeyAsync(IReadOnlyCollection<MemberCursorKey> keys, CancellationToken cancellationToken = default)
    {
        var found = new Dictionary<MemberCursorKey, MemberCursor>();
        foreach (var key in keys)
        {
            if (await GetMemberCursorAsync(key, cancellationToken) is { } cursor)
            {
                found[key] = cursor;
            }
        }

        return found;
    }

    /// <summary>
    /// The last seq of each of these conversations (0 when it has no events), in one go where the store can. A
    /// conversation whose part of the store could not be read is left out.
    /// </summary>
    async ValueTask<Dictionary<string, long>> GetLastSeqsAsync(IReadOnlyCollection<string> convs, CancellationToken cancellationToken = default)
    {
        var heads = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var conv in convs)
        {
            heads[conv] = await GetLastSeqAsync(conv, cancellationToken) ?? 0;
        }

        return heads;
    }

    ValueTask<EventRecord?> GetEventAsync(string conv, long seq, CancellationToken cancellationToken = default);

    /// <summary>Whether a delete event naming <paramref name="target"/> is stored.</summary>
    ValueTask<bool> IsDeletedAsync(string conv, long target, CancellationToken cancellationToken = default);

    /// <summary>Events with <c>after &lt; seq ≤ upTo</c>, oldest first, at most <paramref name="limit"/>.</summary>
    ValueTask<List<EventRecord>> ReadAfterAsync(string conv, long after, long upTo, int limit, CancellationToken cancellationToken = default);

    /// <summary>Events with <c>minSeq ≤ seq &lt; before</c> and <c>ts ≥ minTs</c>, newest first, at most <paramref name="limit"/>.</summary>
    ValueTask<List<EventRecord>> ReadBeforeAsync(string conv, long before, long minSeq, long minTs, int limit, CancellationToken cancellationToken = default);

    /// <summary>The first text or media event of <paramref name="author"/> after <paramref name="after"/>, if any.</summary>
    ValueTask<long?> NextOwnMessageAsync(string conv, string author, long after, CancellationToken cancellationToken = default);

    /// <summary>Others' text and media events in <c>(after, upTo]</c>.</summary>
    ValueTask<long> CountUnreadAsync(string conv, string user, long after, long upTo, CancellationToken cancellationToken = default);

    /// <summary>Every conversation the user is or was a member of, with each one's last seq.</summary>
    ValueTask<List<Membership>> GetMembershipsAsync(string user, CancellationToken cancellationToken = default);

    ValueTask<GroupRecord?> GetGroupAsync(string conv, CancellationToken cancellationToken = default);

    /// <summary>A device's replay positions, by conversation.</summary>
    ValueTask<Dictionary<string, long>> GetDeviceCursorsAsync(string user, int device, CancellationToken cancellationToken = default);

    ValueTask<long?> GetDeviceCursorAsync(DeviceCursorKey key, CancellationToken cancellationToken = default);

    ValueTask<List<MemberCursor>> GetMemberCursorsAsync(string conv, CancellationToken cancellationToken = default);

    ValueTask<MemberCursor?> GetMemberCursorAsync(MemberCursorKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes events older than <paramref name="olderThanTs"/>, about <paramref name="maxEvents"/> at a time (with
    /// their cid entries); returns how many. Conversations keep their last seq.
    /// </summary>
    ValueTask<int> PurgeAsync(long olderThanTs, int maxEvents, CancellationToken cancellationToken = default);

    /// <summary>Proves the store can make a write durable now (for readiness); throws when it cannot.</summary>
    ValueTask ProbeAsync(CancellationToken cancellationToken = default);
}
