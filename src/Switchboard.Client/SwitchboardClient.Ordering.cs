using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Client;

public sealed partial class SwitchboardClient
{
    /// <summary>Largest number of out-of-order events held per conversation while a gap is being repaired.</summary>
    private const int MaxHeld = 10_000;

    /// <summary>
    /// Delivers an event once and in order: a seq at or below the last delivered one is a duplicate (dropped); one
    /// past a gap is held while <c>sync</c> fetches what is missing.
    /// </summary>
    private async ValueTask OnMessageAsync(MsgFrame message, CancellationToken stop)
    {
        var conversation = await ConversationAsync(message.Conv);
        if (conversation.Own.Contains(message.Seq))
        {
            // One of this client's own sends, acked already (a sync brings it back): the app has its ack.
            await AdvanceOverOwnAsync(conversation, message.Conv);
            await DrainHeldAsync(conversation, stop);
            return;
        }

        await AdvanceOverOwnAsync(conversation, message.Conv);
        if (conversation.Last is { } last)
        {
            if (message.Seq <= last)
            {
                // A repeat (replayed because the server had not heard our recv): tell it again so it stops.
                _recvPending[message.Conv] = last;
                return;
            }

            if (message.Seq > last + 1)
            {
                if (conversation.Held.Count < MaxHeld)
                {
                    conversation.Held[message.Seq] = message;
                }

                await RequestSyncAsync(message.Conv, conversation, last, stop);
                return;
            }
        }

        await DeliverAsync(conversation, message, stop);
        await DrainHeldAsync(conversation, stop);
    }

    private async ValueTask OnSyncedAsync(SyncedFrame synced, CancellationToken stop)
    {
        var conversation = await ConversationAsync(synced.Conv);
        conversation.Syncing = false;
        if (synced.More)
        {
            await RequestSyncAsync(synced.Conv, conversation, conversation.Last ?? synced.Upto, stop);
            return;
        }

        // Whatever is still missing is gone from the server (retention): go on from what is held.
        while (conversation.Held.Count > 0)
        {
            var first = conversation.Held.First();
            conversation.Held.Remove(first.Key);
            if (conversation.Last is not { } last || first.Key > last)
            {
                await DeliverAsync(conversation, first.Value, stop);
            }
        }
    }

    private async ValueTask RequestSyncAsync(string conv, Conversation conversation, long after, CancellationToken stop)
    {
        if (conversation.Syncing)
        {
            return;
        }

        conversation.Syncing = true;
        await SendRawAsync(JsonSerializer.Serialize(new ClientFrame { T = FrameTypes.Sync, Conv = conv, After = after, Limit = Limits.MaxSyncLimit }, SwitchboardJsonContext.Default.ClientFrame), stop);
    }

    /// <summary>
    /// An ack of this client's own send: its seq counts as seen, so the next event from someone else is not taken
    /// for one past a gap (which would fetch, and show again, what this client sent).
    /// </summary>
    private async ValueTask OnOwnAckAsync(AckFrame ack, CancellationToken stop)
    {
        var conversation = await ConversationAsync(ack.Conv);
        if (conversation.Last is { } last && ack.Seq <= last)
        {
            return;
        }

        if (conversation.Own.Count < MaxHeld)
        {
            conversation.Own.Add(ack.Seq);
        }

        await AdvanceOverOwnAsync(conversation, ack.Conv);
        await DrainHeldAsync(conversation, stop);
    }

    /// <summary>Moves past own acked seqs that come next, without handing them to the application.</summary>
    private async ValueTask AdvanceOverOwnAsync(Conversation conversation, string conv)
    {
        var moved = false;
        while (conversation.Own.Count > 0)
        {
            var next = (conversation.Last ?? 0) + 1;
            if (conversation.Own.Min < next)
            {
                conversation.Own.Remove(conversation.Own.Min); // behind us already
                continue;
            }

            if (!conversation.Own.Remove(next))
            {
                break;
            }

            conversation.Last = next;
            moved = true;
        }

        if (moved)
        {
            await _state.SetLastSeqAsync(conv, conversation.Last!.Value);
        }
    }

    private async ValueTask DrainHeldAsync(Conversation conversation, CancellationToken stop)
    {
        while (conversation.Held.Count > 0 && conversation.Last is { } last)
        {
            var first = conversation.Held.First();
            if (first.Key > last + 1)
            {
                return;
            }

            conversation.Held.Remove(first.Key);
            if (first.Key == last + 1)
            {
                await DeliverAsync(conversation, first.Value, stop);
                await AdvanceOverOwnAsync(conversation, first.Value.Conv);
            }
        }
    }

    private async ValueTask DeliverAsync(Conversation conversation, MsgFrame message, CancellationToken stop)
    {
        var received = await OpenAsync(message);
        await _events.Writer.WriteAsync(received, stop);
        if (received.DecryptionError is not null)
        {
            // The sender is asked (through the server, without content) to send it again on a new session.
            await SendTransientAsync(new ClientFrame { T = FrameTypes.DecryptFailed, Conv = message.Conv, Seq = message.Seq }, stop);
        }

        conversation.Last = message.Seq;
        await _state.SetLastSeqAsync(message.Conv, message.Seq);
        _recvPending[message.Conv] = message.Seq;
    }

    private async ValueTask<Conversation> ConversationAsync(string conv)
    {
        if (!_conversations.TryGetValue(conv, out var conversation))
        {
            conversation = new Conversation { Last = await _state.GetLastSeqAsync(conv) };
            _conversations[conv] = conversation;
        }

        return conversation;
    }

    /// <summary>Tells the server, cumulatively per conversation, what the application has been given.</summary>
    private async Task RecvLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(_options.RecvDelay, stop);
            foreach (var (conv, seq) in _recvPending)
            {
                if (_socket is null)
                {
                    break; // sent after reconnecting
                }

                if (await SendRawAsync(JsonSerializer.Serialize(new ClientFrame { T = FrameTypes.Recv, Conv = conv, Seq = seq }, SwitchboardJsonContext.Default.ClientFrame), stop))
                {
                    _recvPending.TryRemove(new KeyValuePair<string, long>(conv, seq)); // a newer seq may have replaced it meanwhile
                }
            }
        }
    }

    private sealed class Conversation
    {
        public long? Last { get; set; }
        public bool Syncing { get; set; }
        public SortedDictionary<long, MsgFrame> Held { get; } = [];

        /// <summary>Seqs of this client's own acked sends not yet passed.</summary>
        public SortedSet<long> Own { get; } = [];
    }
}
