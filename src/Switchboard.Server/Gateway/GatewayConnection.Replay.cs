using Switchboard.Protocol;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Gateway;

internal sealed partial class GatewayConnection
{
    private readonly Lock _liveLock = new();
    private bool _live;
    private bool _missedWhileReplaying;

    /// <summary>Last seq sent per conversation by the replay; a live event at or below it is a repeat.</summary>
    private Dictionary<string, long>? _replayed;

    public void SendEvent(string conv, long seq, byte[] frame, long receivedAt)
    {
        lock (_liveLock)
        {
            if (!_live)
            {
                // The replay reads the store, which already holds this event: it will pick it up in order.
                _missedWhileReplaying = true;
                return;
            }

            if (_replayed is not null && _replayed.TryGetValue(conv, out var sent) && seq <= sent)
            {
                return;
            }
        }

        Enqueue(new Outbound(frame, receivedAt));
    }

    /// <summary>
    /// Streams every event this device has not received, per conversation in seq order, page by page as the
    /// socket drains; repeats until no event arrived meanwhile, then turns live.
    /// </summary>
    private async Task ReplayAsync(long lastActive)
    {
        try
        {
            var store = _services.Store;
            var positions = new Dictionary<string, long>(StringComparer.Ordinal);
            var cursors = store.GetDeviceCursors(User, Device);
            List<Membership> memberships;
            while (true)
            {
                lock (_liveLock)
                {
                    _missedWhileReplaying = false;
                }

                memberships = store.GetMemberships(User);
                foreach (var member in memberships)
                {
                    if (!positions.TryGetValue(member.Conv, out var position))
                    {
                        position = Math.Max(cursors.GetValueOrDefault(member.Conv), member.FirstSeq - 1);
                    }

                    var upTo = member.RemovedSeq ?? long.MaxValue;
                    while (Volatile.Read(ref _closeCode) == 0)
                    {
                        var page = store.ReadAfter(member.Conv, position, upTo, _options.ReplayPageSize);
                        foreach (var e in page)
                        {
                            if (!(e.From == User && e.Dev == Device))
                            {
                                await WaitForRoomAsync();
                                Send(Frames.Serialize(e));
                            }

                            position = e.Seq;
                        }

                        positions[member.Conv] = position;
                        if (page.Count < _options.ReplayPageSize)
                        {
                            break;
                        }
                    }
                }

                if (Volatile.Read(ref _closeCode) != 0)
                {
                    return;
                }

                lock (_liveLock)
                {
                    if (!_missedWhileReplaying)
                    {
                        SendReceiptState(memberships, lastActive);
                        Send(Frames.Live);
                        _replayed = positions;
                        _live = true;
                        return;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _services.LogReplayFailed(ex, User, Device);
            Close(CloseCodes.InternalError, "replay failed");
        }
    }

    /// <summary>Receipts that moved while this device was away: the other party's cursors and the user's own read.</summary>
    private void SendReceiptState(List<Membership> memberships, long lastActive)
    {
        foreach (var member in memberships)
        {
            if (member.Kind != "direct" || member.LastSeq == 0)
            {
                continue;
            }

            foreach (var cursor in _services.Store.GetMemberCursors(member.Conv))
            {
                if (cursor.Updated < lastActive)
                {
                    continue;
                }

                if (cursor.User != User && cursor.Delivered > 0)
                {
                    Send(Frames.Serialize(new ReceiptFrame(member.Conv, cursor.User, ReceiptKinds.Delivered, cursor.Delivered)));
                }

                if (cursor.Read > 0)
                {
                    Send(Frames.Serialize(new ReceiptFrame(member.Conv, cursor.User, ReceiptKinds.Read, cursor.Read)));
                }
            }
        }
    }
}
