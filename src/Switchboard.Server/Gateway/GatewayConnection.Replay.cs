using Switchboard.Protocol;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Gateway;

internal sealed partial class GatewayConnection
{
    private bool _live;

    /// <summary>Conversations that had events while replaying: the next pass reads only these.</summary>
    private HashSet<string>? _missed;

    /// <summary>Last seq sent per conversation by the replay; a live event at or below it is a repeat.</summary>
    /// <remarks>
    /// Kept for the socket's life, so kept small: an array for a few conversations (most devices), a dictionary
    /// for many.
    /// </remarks>
    private object? _replayed;

    private const int FewConversations = 16;

    private bool WasReplayed(string conv, long seq)
    {
        switch (_replayed)
        {
            case KeyValuePair<string, long>[] few:
                foreach (var (replayedConv, sent) in few)
                {
                    if (string.Equals(replayedConv, conv, StringComparison.Ordinal))
                    {
                        return seq <= sent;
                    }
                }

                return false;
            case Dictionary<string, long> many:
                return many.TryGetValue(conv, out var last) && seq <= last;
            default:
                return false;
        }
    }

    public void SendEvent(string conv, long seq, byte[] frame, long receivedAt, bool inline)
    {
        lock (_lock)
        {
            if (!_live)
            {
                // The replay reads the store, which already holds this event: it will pick it up in order.
                (_missed ??= new HashSet<string>(StringComparer.Ordinal)).Add(conv);
                return;
            }

            if (WasReplayed(conv, seq))
            {
                return;
            }
        }

        Enqueue(new Outbound(frame, receivedAt), inline);
    }

    /// <summary>
    /// Streams every event this device has not received, per conversation in seq order, pausing whenever the
    /// socket's queue is half full. Conversations that got events meanwhile are read again until a pass finds
    /// none; then the receipt state and <c>live</c> go out and live delivery takes over.
    /// </summary>
    private async Task ReplayAsync(long lastActive)
    {
        try
        {
            var store = _services.Store;
            var positions = new Dictionary<string, long>(StringComparer.Ordinal);
            var cursors = await store.GetDeviceCursorsAsync(User, Device);
            var memberships = (await store.GetMembershipsAsync(User)).ToDictionary(m => m.Conv, StringComparer.Ordinal);
            IEnumerable<Membership> pass = memberships.Values;
            List<byte[]>? receipts = null;
            while (true)
            {
                foreach (var member in pass)
                {
                    if (!await ReplayConversationAsync(member, positions, cursors))
                    {
                        return;
                    }
                }

                receipts ??= await ReceiptStateAsync(memberships.Values, lastActive);
                HashSet<string> missed;
                lock (_lock)
                {
                    if (_missed is null || _missed.Count == 0)
                    {
                        foreach (var receipt in receipts)
                        {
                            Send(receipt);
                        }

                        Send(Frames.Live);
                        _replayed = positions.Count <= FewConversations ? positions.ToArray() : positions;
                        _live = true;
                        return;
                    }

                    missed = _missed;
                    _missed = null;
                }

                // Reload (outside the lock: fanout takes it): the user may have joined, left or been re-added meanwhile.
                memberships = (await store.GetMembershipsAsync(User)).ToDictionary(m => m.Conv, StringComparer.Ordinal);
                pass = missed.Where(memberships.ContainsKey).Select(conv => memberships[conv]).ToList();
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _services.LogReplayFailed(ex, User, Device);
            Close(CloseCodes.InternalError, "replay failed");
        }
    }

    /// <summary>Sends one conversation's backlog from the last position; false when the socket is closing.</summary>
    private async Task<bool> ReplayConversationAsync(Membership member, Dictionary<string, long> positions, Dictionary<string, long> cursors)
    {
        var position = Math.Max(
            positions.TryGetValue(member.Conv, out var reached) ? reached : cursors.GetValueOrDefault(member.Conv),
            member.FirstSeq - 1); // a re-added member starts again at their new joining

        // A removed member's replay stops at their removal, even when the store has more.
        var upTo = member.RemovedSeq ?? long.MaxValue;
        while (true)
        {
            if (Volatile.Read(ref _closeCode) != 0)
            {
                return false;
            }

            var page = await _services.Store.ReadAfterAsync(member.Conv, position, upTo, _options.ReplayPageSize);
            foreach (var e in page)
            {
                if (!(e.Sender == User && e.Dev == Device && e.Kind != EventKinds.System))
                {
                    await WaitForRoomCoreAsync();
                    Send(Frames.Event(e, (User, Device)));
                }

                position = e.Seq;
                if (RemovesMe(e))
                {
                    // Removed while replaying (after the memberships were read): nothing past this event is ours.
                    positions[member.Conv] = position;
                    return true;
                }
            }

            positions[member.Conv] = position;
            if (page.Count < _options.ReplayPageSize)
            {
                return true;
            }
        }
    }

    /// <summary>
    /// In a group: the user's own read cursor (for their other devices) and, when the members other than the user
    /// have passed one of the user's messages, the aggregated delivered and read receipts.
    /// </summary>
    private async Task GroupReceiptStateAsync(Membership member, long lastActive, List<byte[]> frames)
    {
        var store = _services.Store;
        var cursors = await store.GetMemberCursorsAsync(member.Conv);
        if (!cursors.Any(c => c.Updated >= lastActive) || await _services.Groups.GetAsync(member.Conv) is not { } group)
        {
            return;
        }

        var byUser = cursors.ToDictionary(c => c.User, StringComparer.Ordinal);
        if (byUser.TryGetValue(User, out var own) && own.Updated >= lastActive && own.Read > 0)
        {
            frames.Add(Frames.Serialize(new ReceiptFrame(member.Conv, User, ReceiptKinds.Read, own.Read)));
        }

        if (await store.NextOwnMessageAsync(member.Conv, User, 0) is not { } firstOwn)
        {
            return;
        }

        long minDelivered = long.MaxValue, minRead = long.MaxValue;
        foreach (var (user, other) in group.Current)
        {
            if (user == User)
            {
                continue;
            }

            var cursor = byUser.GetValueOrDefault(user);
            minDelivered = Math.Min(minDelivered, Math.Max(cursor.Delivered, other.JoinedSeq - 1));
            minRead = Math.Min(minRead, Math.Max(cursor.Read, other.JoinedSeq - 1));
        }

        if (minDelivered != long.MaxValue && minDelivered >= firstOwn)
        {
            frames.Add(Frames.Serialize(new ReceiptFrame(member.Conv, "*", ReceiptKinds.Delivered, minDelivered)));
        }

        if (minRead != long.MaxValue && minRead >= firstOwn)
        {
            frames.Add(Frames.Serialize(new ReceiptFrame(member.Conv, "*", ReceiptKinds.Read, minRead)));
        }
    }

    private bool RemovesMe(EventRecord e) =>
        e.Kind == EventKinds.System && e.System is { } system
        && System.Text.Json.JsonSerializer.Deserialize(system, SwitchboardJsonContext.Default.SystemInfo) is { Op: SystemOps.Removed or SystemOps.Left, Users: { } users }
        && users.Contains(User);

    /// <summary>Receipts that moved while this device was away: the other party's cursors and the user's own read.</summary>
    private async Task<List<byte[]>> ReceiptStateAsync(IEnumerable<Membership> memberships, long lastActive)
    {
        var frames = new List<byte[]>();
        foreach (var member in memberships)
        {
            if (member.Kind == "group")
            {
                if (member.IsCurrent)
                {
                    await GroupReceiptStateAsync(member, lastActive, frames);
                }

                continue;
            }

            if (member.LastSeq == 0)
            {
                continue;
            }

            foreach (var cursor in await _services.Store.GetMemberCursorsAsync(member.Conv))
            {
                if (cursor.Updated < lastActive)
                {
                    continue;
                }

                if (cursor.User != User && cursor.Delivered > 0)
                {
                    frames.Add(Frames.Serialize(new ReceiptFrame(member.Conv, cursor.User, ReceiptKinds.Delivered, cursor.Delivered)));
                }

                if (cursor.Read > 0)
                {
                    frames.Add(Frames.Serialize(new ReceiptFrame(member.Conv, cursor.User, ReceiptKinds.Read, cursor.Read)));
                }
            }
        }

        return frames;
    }
}
