using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Fanout;
using Switchboard.Server.Hosting;
using Switchboard.Server.Presence;
using Switchboard.Server.Routing;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// The message path: checks the shape of client frames, hands writes to the store's group commit, and once a
/// batch is durable acks the senders and routes events and receipts to online devices.
/// </summary>
internal sealed partial class MessageService(
    IMessageStore store,
    ISessionRouter router,
    IFanoutQueue fanout,
    GroupDirectory groups,
    GroupReceipts groupReceipts,
    PresenceService presence,
    IOptions<MessagingOptions> options,
    SwitchboardMetrics metrics,
    TimeProvider time,
    ILogger<MessageService> logger) : ICommitObserver
{
    private readonly MessagingOptions _options = options.Value;

    /// <summary>Handles one parsed frame from an authenticated socket (not hello).</summary>
    public ValueTask HandleAsync(IClient client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
    {
        switch (frame.T)
        {
            case FrameTypes.Send:
                return SendAsync(client, frame, receivedAt, cancellationToken);
            case FrameTypes.Edit:
            case FrameTypes.Delete:
                return ChangeAsync(client, frame, receivedAt, cancellationToken);
            case FrameTypes.Recv:
            case FrameTypes.Read:
                return CursorAsync(client, frame, cancellationToken);
            case FrameTypes.Sync:
                return SyncAsync(client, frame);
            case FrameTypes.Typing:
                Typing(client, frame);
                return ValueTask.CompletedTask;
            case FrameTypes.Watch:
                Watch(client, frame);
                return ValueTask.CompletedTask;
            case FrameTypes.Ping:
                client.Send(Frames.Pong);
                return ValueTask.CompletedTask;
            case FrameTypes.Hello:
                return BadFrame(client, "already said hello", null);
            default:
                return BadFrame(client, frame.T is null ? "missing t" : $"unknown frame type '{frame.T}'", null);
        }
    }

    private static ValueTask BadFrame(IClient client, string message, string? reference)
    {
        client.Send(Frames.Error(ErrorCodes.BadFrame, message, reference));
        return ValueTask.CompletedTask;
    }

    private ValueTask SendAsync(IClient client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
    {
        if (CheckCid(client, frame) is not { } cid || CheckConv(client, frame, cid) is not { } conv)
        {
            return ValueTask.CompletedTask;
        }

        if (frame.Kind is not (EventKinds.Text or EventKinds.Media))
        {
            return BadFrame(client, frame.Kind is null ? "missing kind" : $"kind must be text or media, not '{frame.Kind}'", cid);
        }

        if (!CheckPayload(client, frame, cid, out var pendingCode, out var pendingMessage))
        {
            return ValueTask.CompletedTask;
        }

        if (frame.ReplyTo is < 1)
        {
            return BadFrame(client, "reply_to must be a seq (≥ 1)", cid);
        }

        return SubmitAsync(
            client,
            new AppendCommand
            {
                Origin = client,
                Conv = conv,
                Cid = cid,
                Kind = frame.Kind,
                Body = frame.Body,
                E2ee = frame.E2ee,
                ReplyTo = frame.ReplyTo,
                PendingErrorCode = pendingCode,
                PendingErrorMessage = pendingMessage,
                Rate = client.State.Rate,
                ReceivedAt = receivedAt,
            },
            cancellationToken);
    }

    private ValueTask ChangeAsync(IClient client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
    {
        if (CheckCid(client, frame) is not { } cid || CheckConv(client, frame, cid) is not { } conv)
        {
            return ValueTask.CompletedTask;
        }

        if (frame.Target is not { } target || target < 1)
        {
            return BadFrame(client, "target must be a seq (≥ 1)", cid);
        }

        string? pendingCode = null, pendingMessage = null;
        var isEdit = frame.T == FrameTypes.Edit;
        if (isEdit && !CheckPayload(client, frame, cid, out pendingCode, out pendingMessage))
        {
            return ValueTask.CompletedTask;
        }

        return SubmitAsync(
            client,
            new AppendCommand
            {
                Origin = client,
                Conv = conv,
                Cid = cid,
                Kind = isEdit ? EventKinds.Edit : EventKinds.Delete,
                Body = isEdit ? frame.Body : null,
                E2ee = isEdit ? frame.E2ee : null,
                Target = target,
                PendingErrorCode = pendingCode,
                PendingErrorMessage = pendingMessage,
                Rate = client.State.Rate,
                ReceivedAt = receivedAt,
            },
            cancellationToken);
    }

    private ValueTask CursorAsync(IClient client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (CheckConv(client, frame, null) is not { } conv)
        {
            return ValueTask.CompletedTask;
        }

        if (frame.Seq is not { } seq || seq < 0)
        {
            return BadFrame(client, "seq must be a number ≥ 0", conv);
        }

        return SubmitAsync(client, new CursorCommand { Origin = client, Conv = conv, Seq = seq, IsRead = frame.T == FrameTypes.Read }, cancellationToken);
    }

    /// <summary>Queues a write for the group commit, holding one of the socket's in-flight slots until it commits.</summary>
    private async ValueTask SubmitAsync(IClient client, StoreCommand command, CancellationToken cancellationToken)
    {
        await client.State.InFlight.WaitAsync(cancellationToken);
        try
        {
            await store.SubmitAsync(command, cancellationToken);
        }
        catch
        {
            client.State.InFlight.Release();
            throw;
        }
    }

    private static string? CheckCid(IClient client, ClientFrame frame)
    {
        if (frame.Cid is not { Length: > 0 and <= Limits.MaxCidLength } cid)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, $"cid must be a string of 1 to {Limits.MaxCidLength} characters", frame.Cid));
            return null;
        }

        return cid;
    }

    private static string? CheckConv(IClient client, ClientFrame frame, string? reference)
    {
        if (string.IsNullOrEmpty(frame.Conv))
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "missing conv", reference));
            return null;
        }

        return frame.Conv;
    }

    /// <summary>
    /// Exactly one of body and e2ee (bad_frame otherwise). Size problems are not answered here: the writer
    /// answers them only if the cid is not a duplicate, as the protocol orders the checks.
    /// </summary>
    private bool CheckPayload(IClient client, ClientFrame frame, string cid, out string? pendingCode, out string? pendingMessage)
    {
        pendingCode = pendingMessage = null;
        var hasE2ee = frame.E2ee is { ValueKind: not JsonValueKind.Null };
        if ((frame.Body is null) == !hasE2ee)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "exactly one of body and e2ee is required", cid));
            return false;
        }

        if (hasE2ee && frame.E2ee!.Value.ValueKind != JsonValueKind.Object)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "e2ee must be an object", cid));
            return false;
        }

        if (frame.Body is { } body && Encoding.UTF8.GetByteCount(body) > _options.MaxBodyBytes)
        {
            pendingCode = ErrorCodes.TooLarge;
            pendingMessage = $"body is over {_options.MaxBodyBytes} bytes";
        }
        else if (hasE2ee && Encoding.UTF8.GetByteCount(frame.E2ee!.Value.GetRawText()) > _options.MaxE2eeBytes)
        {
            pendingCode = ErrorCodes.TooLarge;
            pendingMessage = $"e2ee is over {_options.MaxE2eeBytes} bytes";
        }

        return true;
    }

    private async ValueTask SyncAsync(IClient client, ClientFrame frame)
    {
        if (CheckConv(client, frame, null) is not { } conv)
        {
            return;
        }

        if (frame.After is not { } after || after < 0 || frame.Limit is < 1)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "sync needs after ≥ 0 and, if given, limit ≥ 1", conv));
            return;
        }

        var access = store.ResolveAccess(conv, client.User);
        if (access.Membership is not { } member)
        {
            client.Send(Frames.Error(access.ErrorCode!, access.ErrorMessage!, conv));
            return;
        }

        var limit = Math.Min(frame.Limit ?? Limits.MaxSyncLimit, Limits.MaxSyncLimit);
        var from = Math.Max(after, member.FirstSeq - 1);
        var events = from < member.LastVisible ? store.ReadAfter(conv, from, member.LastVisible, limit) : [];
        foreach (var e in events)
        {
            await client.WaitForRoomAsync(); // a big page streams as the socket drains, never over its budget
            client.Send(Frames.Serialize(e));
        }

        var upto = events.Count > 0 ? events[^1].Seq : Math.Min(after, member.LastVisible);
        client.Send(Frames.Serialize(new SyncedFrame(conv, upto, upto < member.LastVisible)));
    }

    private void Typing(IClient client, ClientFrame frame)
    {
        if (CheckConv(client, frame, null) is not { } conv)
        {
            return;
        }

        if (frame.On is not { } on)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "typing needs on: true or false", conv));
            return;
        }

        // Throttle before any lookup: extras within the window are dropped silently.
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var forwarded = client.State.TypingForwarded;
        lock (forwarded)
        {
            if (forwarded.TryGetValue((conv, on), out var last) && now - last < _options.TypingThrottleMs)
            {
                return;
            }

            if (forwarded.Count > 64)
            {
                forwarded.Clear(); // bounded: a socket typing in many chats forgets old entries
            }

            forwarded[(conv, on)] = now;
        }

        IReadOnlyList<string> members;
        if (Names.IsGroup(conv))
        {
            if (groups.Get(conv) is not { } group)
            {
                client.Send(Frames.Error(ErrorCodes.NotFound, "no such conversation", conv));
                return;
            }

            if (!group.Current.ContainsKey(client.User))
            {
                client.Send(Frames.Error(ErrorCodes.Forbidden, "not a member of this conversation", conv));
                return;
            }

            members = group.Users;
        }
        else
        {
            var access = store.ResolveAccess(conv, client.User);
            if (access.Membership is null)
            {
                client.Send(Frames.Error(access.ErrorCode!, access.ErrorMessage!, conv));
                return;
            }

            members = store.CurrentMembers(conv);
        }

        var bytes = Frames.Serialize(new TypingFrame(conv, client.User, on));
        foreach (var member in members)
        {
            if (member == client.User)
            {
                continue;
            }

            foreach (var session in router.Sessions(member))
            {
                session.Send(bytes);
            }
        }
    }

    private void Watch(IClient client, ClientFrame frame)
    {
        if (frame.Users is not { } users || users.Length > 1024)
        {
            client.Send(Frames.Error(ErrorCodes.BadFrame, "watch needs users: a list of at most 1024 handles", null));
            return;
        }

        presence.Watch(client, users);
    }

    public void OnCommitted(IReadOnlyList<StoreCommand> batch)
    {
        foreach (var command in batch)
        {
            var origin = command.Origin as IClient;
            try
            {
                if (command.ErrorCode is { } code)
                {
                    metrics.Rejected.Inc();
                    var reference = command is AppendCommand a ? a.Cid : command.Conv;
                    origin?.Send(Frames.Serialize(new ErrorFrame(code, command.ErrorMessage ?? code, reference, command.RetryAfterMs > 0 ? command.RetryAfterMs : null)));
                    continue;
                }

                switch (command)
                {
                    case AppendCommand append:
                        Committed(append, origin);
                        break;
                    case CursorCommand cursor:
                        Committed(cursor);
                        break;
                    case GroupCommand group:
                        Committed(group);
                        break;
                }
            }
            catch (Exception ex)
            {
                LogCommitHandlingFailed(ex, command.Conv);
            }
            finally
            {
                origin?.State.InFlight.Release();
                command.Completion?.TrySetResult();
            }
        }
    }

    private void Committed(GroupCommand command)
    {
        if (command.Event is not { } stored)
        {
            return;
        }

        metrics.Accepted.Inc();
        groupReceipts.MembershipChanged(command.Group!, command.Departed);
        // The acting device gets the event too (an HTTP call has no ack), and so does whoever just left.
        var recipients = command.Departed.Count == 0 ? command.Members : [.. command.Members, .. command.Departed];
        fanout.Deliver(new FanoutItem(stored.Conv, stored.Seq, Frames.Serialize(stored), recipients, null, 0, 0));
    }

    private void Committed(AppendCommand command, IClient? origin)
    {
        if (command.Ack is { } ack)
        {
            origin?.Send(Frames.Serialize(ack));
        }

        if (command.Event is not { } stored)
        {
            metrics.Duplicates.Inc();
            return;
        }

        metrics.Accepted.Inc();
        if (Names.IsGroup(stored.Conv))
        {
            groupReceipts.Appended(stored);
        }

        // Everyone's devices but the sending one, which has its ack.
        fanout.Deliver(new FanoutItem(stored.Conv, stored.Seq, Frames.Serialize(stored), command.Members, stored.From, stored.Dev, command.ReceivedAt));
    }

    private void Committed(CursorCommand command)
    {
        var user = command.Origin.User;
        if (Names.IsGroup(command.Conv))
        {
            // No per-member receipt to the group: the reader's own devices learn the read, authors get aggregates.
            if (command.ReadAdvancedTo is { } ownRead)
            {
                var frame = Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Read, ownRead));
                foreach (var session in router.Sessions(user))
                {
                    if (session.Device != command.Origin.Device)
                    {
                        session.Send(frame);
                    }
                }
            }

            groupReceipts.CursorMoved(command.Conv, user, command.DeliveredAdvancedTo, command.ReadAdvancedTo);
            return;
        }

        if (command.DeliveredAdvancedTo is { } delivered)
        {
            ToOthers(command, Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Delivered, delivered)), includeOwnDevices: false);
        }

        if (command.ReadAdvancedTo is { } read)
        {
            ToOthers(command, Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Read, read)), includeOwnDevices: true);
        }
    }

    private void ToOthers(CursorCommand command, byte[] bytes, bool includeOwnDevices)
    {
        foreach (var member in command.Members)
        {
            var own = member == command.Origin.User;
            if (own && !includeOwnDevices)
            {
                continue;
            }

            foreach (var session in router.Sessions(member))
            {
                if (own && session.Device == command.Origin.Device)
                {
                    continue;
                }

                session.Send(bytes);
            }
        }
    }

    [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Acking or delivering a committed command in {Conv} failed")]
    private partial void LogCommitHandlingFailed(Exception exception, string conv);

    private ILogger Logger => logger;
}
