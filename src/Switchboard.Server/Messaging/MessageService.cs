using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Delivery;
using Switchboard.Server.Hosting;
using Switchboard.Server.Presence;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// The front of the message path: checks the shape of client frames, hands writes to the sequencer, answers
/// reads (<c>sync</c>), <c>typing</c>, <c>watch</c> and <c>ping</c>, and, once a batch is durable, sends acks,
/// errors and receipts and hands events to delivery. Every frame out goes through <see cref="IDeliveryHub"/>.
/// </summary>
internal sealed partial class MessageService(
    Sequencer sequencer,
    IMessageStore store,
    IDeliveryHub delivery,
    ConversationAccess access,
    GroupReceipts groupReceipts,
    PresenceService presence,
    RateGates rates,
    Push.PushDispatcher push,
    Accounts.IAccountStore accountStore,
    IOptions<MessagingOptions> options,
    SwitchboardMetrics metrics,
    TimeProvider time,
    ILogger<MessageService> logger) : ICommitObserver
{
    private readonly MessagingOptions _options = options.Value;

    /// <summary>Handles one parsed frame from an authenticated socket (not hello).</summary>
    public ValueTask HandleAsync(ConnectionContext client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
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
                return SyncAsync(client, frame, cancellationToken);
            case FrameTypes.Typing:
                return TypingAsync(client, frame, cancellationToken);
            case FrameTypes.Watch:
                return WatchAsync(client, frame);
            case FrameTypes.Ping:
                return delivery.SendToConnectionAsync(client, Frames.Pong);
            case FrameTypes.DecryptFailed:
                return DecryptFailedAsync(client, frame, cancellationToken);
            case FrameTypes.Resend:
                return ResendAsync(client, frame, cancellationToken);
            case FrameTypes.Hello:
                return BadFrame(client, "already said hello", null);
            default:
                return BadFrame(client, frame.T is null ? "missing t" : $"unknown frame type '{frame.T}'", null);
        }
    }

    private ValueTask BadFrame(ConnectionContext client, string message, string? reference) =>
        delivery.SendToConnectionAsync(client, Frames.Error(ErrorCodes.BadFrame, message, reference));

    private async ValueTask SendAsync(ConnectionContext client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
    {
        if (await RefuseSendAsync(client, frame, cancellationToken) is not { } refusal)
        {
            await SubmitAsync(client, NewSend(client, frame, client.State.Rate, receivedAt), cancellationToken);
        }
        else if (refusal.Code == ErrorCodes.BadFrame)
        {
            await BadFrame(client, refusal.Message, frame.Cid is { Length: > 0 and <= Limits.MaxCidLength } ? frame.Cid : null);
        }
        else
        {
            await delivery.SendToConnectionAsync(client, Frames.Serialize(new ErrorFrame(refusal.Code, refusal.Message, frame.Cid) { Recipients = refusal.Recipients }));
        }
    }

    /// <summary>A send refused before it reaches the sequencer: its code, message and, for <c>devices_changed</c>, the devices to name.</summary>
    private sealed record Refusal(string Code, string Message, List<DeviceAddress>? Recipients = null);

    /// <summary>The checks of a send made before the sequencer, on the socket and over HTTP alike; null when it may go on.</summary>
    private async ValueTask<Refusal?> RefuseSendAsync(ICommandOrigin origin, ClientFrame frame, CancellationToken cancellationToken) =>
        CheckSend(frame) is { } shape ? new Refusal(ErrorCodes.BadFrame, shape)
        : IsRefusedPlaintext(frame) ? new Refusal(ErrorCodes.Forbidden, PlaintextRefused)
        : await DevicesChangedAsync(origin, frame, cancellationToken) is { } current ? new Refusal(ErrorCodes.DevicesChanged, DevicesChangedMessage, current)
        : null;

    private const string DevicesChangedMessage = "the recipients' devices changed: encrypt for the devices listed and send again with the same cid";

    /// <summary>
    /// An encrypted send must be made for the devices that should read it: every current device of every member, but
    /// the sending one. A pairwise payload (<c>e2ee.to</c>, one ciphertext per device) names exactly those; a
    /// Sender-Key payload (<c>e2ee.sk</c>) names their digest in <c>e2ee.devices</c> (<see cref="DeviceSetDigest"/>),
    /// and its <c>to</c> (the sender key handed to devices that lack it) names some of them only. Null when the send
    /// is right (or its payload is neither); else the devices it should be made for.
    /// </summary>
    private async ValueTask<List<DeviceAddress>?> DevicesChangedAsync(ICommandOrigin origin, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (frame.E2ee is not { ValueKind: JsonValueKind.Object } e2ee)
        {
            return null;
        }

        var pairwise = e2ee.TryGetProperty("to", out var to) && to.ValueKind == JsonValueKind.Array;
        // A Sender-Key send (or a key hand-out ahead of one) names its devices by their digest.
        var senderKey = (e2ee.TryGetProperty("sk", out var sk) && sk.ValueKind == JsonValueKind.String) || frame.Kind == EventKinds.Key;
        if (!pairwise && !senderKey)
        {
            return null;
        }

        // Duplicates are answered before anything else: a resend of a stored cid gets its original ack, whatever
        // devices were linked since (the sequencer answers it).
        if (await store.FindCidAsync(origin.User, frame.Cid!, frame.Conv, cancellationToken) is not null)
        {
            return null;
        }

        var named = new HashSet<(string, int)>();
        if (pairwise)
        {
            foreach (var entry in to.EnumerateArray())
            {
                if (entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("user", out var user) && user.ValueKind == JsonValueKind.String
                    && entry.TryGetProperty("device", out var device) && device.TryGetInt32(out var number))
                {
                    named.Add((user.GetString()!, number));
                }
            }
        }

        var current = new List<DeviceAddress>();
        foreach (var member in await access.CurrentMembersAsync(frame.Conv!, cancellationToken))
        {
            foreach (var device in await accountStore.GetDevicesAsync(member, cancellationToken))
            {
                if (!device.Revoked && !(member == origin.User && device.Device == origin.Device))
                {
                    current.Add(new DeviceAddress(member, device.Device));
                }
            }
        }

        if (!senderKey)
        {
            return named.SetEquals(current.Select(d => (d.User, d.Device))) ? null : current;
        }

        var right = e2ee.TryGetProperty("devices", out var digest) && digest.ValueKind == JsonValueKind.String && digest.ValueEquals(DeviceSetDigest(current))
            && named.IsSubsetOf(current.Select(d => (d.User, d.Device)));
        return right ? null : current;
    }

    /// <summary>
    /// The digest a Sender-Key send names its devices by: SHA-256 over the lines <c>user:device\n</c> of every
    /// device, sorted by ordinal byte order, as unpadded base64url.
    /// </summary>
    internal static string DeviceSetDigest(IEnumerable<DeviceAddress> devices)
    {
        var lines = devices.Select(d => $"{d.User}:{d.Device.ToString(System.Globalization.CultureInfo.InvariantCulture)}\n").Order(StringComparer.Ordinal);
        return System.Buffers.Text.Base64Url.EncodeToString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(string.Concat(lines))));
    }

    private const string PlaintextRefused = "this server stores end-to-end encrypted messages only: send e2ee, not body";

    /// <summary>With <c>RequireE2ee</c>, a readable body is refused.</summary>
    private bool IsRefusedPlaintext(ClientFrame frame) => _options.RequireE2ee && frame.Body is not null;

    /// <summary>What is wrong with a send's shape, or null.</summary>
    private string? CheckSend(ClientFrame frame) =>
        frame.Cid is not { Length: > 0 and <= Limits.MaxCidLength } ? $"cid must be a string of 1 to {Limits.MaxCidLength} characters"
        : string.IsNullOrEmpty(frame.Conv) ? "missing conv"
        : frame.Kind is not (EventKinds.Text or EventKinds.Media or EventKinds.Key) ? (frame.Kind is null ? "missing kind" : $"kind must be text or media, not '{frame.Kind}'")
        : frame.Kind == EventKinds.Key && !IsKeyHandout(frame) ? "kind key is a group's e2ee payload with devices and to, and no sk or body"
        : CheckPayload(frame) is { } shape ? shape
        : frame.ReplyTo is < 1 ? "reply_to must be a seq (≥ 1)"
        : null;

    /// <summary>A <c>key</c> event: sender keys handed out in a group, ahead of a message too large to carry them all.</summary>
    private static bool IsKeyHandout(ClientFrame frame) =>
        Names.IsGroup(frame.Conv!) && frame.Body is null && frame.E2ee is { ValueKind: JsonValueKind.Object } e2ee
        && e2ee.TryGetProperty("to", out var to) && to.ValueKind == JsonValueKind.Array
        && e2ee.TryGetProperty("devices", out var devices) && devices.ValueKind == JsonValueKind.String && !e2ee.TryGetProperty("sk", out _);

    private AppendCommand NewSend(ICommandOrigin origin, ClientFrame frame, RateGate? rate, long receivedAt, TaskCompletionSource? completion = null)
    {
        var (pendingCode, pendingMessage) = CheckSize(frame);
        return new AppendCommand
        {
            Origin = origin,
            Conv = frame.Conv!,
            Cid = frame.Cid!,
            Kind = frame.Kind!,
            Body = frame.Body,
            E2ee = frame.E2ee,
            ReplyTo = frame.ReplyTo,
            PendingErrorCode = pendingCode,
            PendingErrorMessage = pendingMessage,
            Rate = rate,
            ReceivedAt = receivedAt,
            Completion = completion,
        };
    }

    /// <summary>
    /// A send over HTTP (<c>POST /v1/conversations/{conv}/messages</c>): the same checks, the same idempotency by
    /// cid, and the same promise as on a socket, answered once durable; the message reaches every device of the
    /// sender, the calling one too (it has no socket waiting for an ack). Returns the command with its ack or error.
    /// </summary>
    public async Task<AppendCommand> SendOverHttpAsync(HttpOrigin origin, ClientFrame frame, CancellationToken cancellationToken)
    {
        var receivedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        if (await RefuseSendAsync(origin, frame, cancellationToken) is { } refusal)
        {
            var refused = new AppendCommand { Origin = origin, Conv = frame.Conv ?? "", Cid = frame.Cid ?? "", Kind = frame.Kind ?? "", Recipients = refusal.Recipients };
            refused.Fail(refusal.Code, refusal.Message);
            return refused;
        }

        var rate = rates.For(origin.User); // the user's shared bucket, as for each of their sockets
        try
        {
            var command = NewSend(origin, frame, rate, receivedAt, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            await sequencer.SubmitAsync(command, cancellationToken);
            await command.Completion!.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            return command;
        }
        finally
        {
            rates.Release(origin.User);
        }
    }

    private ValueTask ChangeAsync(ConnectionContext client, ClientFrame frame, long receivedAt, CancellationToken cancellationToken)
    {
        if (frame.Cid is not { Length: > 0 and <= Limits.MaxCidLength } cid)
        {
            return BadFrame(client, $"cid must be a string of 1 to {Limits.MaxCidLength} characters", frame.Cid);
        }

        if (string.IsNullOrEmpty(frame.Conv))
        {
            return BadFrame(client, "missing conv", cid);
        }

        if (frame.Target is not { } target || target < 1)
        {
            return BadFrame(client, "target must be a seq (≥ 1)", cid);
        }

        var isEdit = frame.T == FrameTypes.Edit;
        string? pendingCode = null, pendingMessage = null;
        if (isEdit && IsRefusedPlaintext(frame))
        {
            return delivery.SendToConnectionAsync(client, Frames.Error(ErrorCodes.Forbidden, PlaintextRefused, cid));
        }

        if (isEdit)
        {
            if (CheckPayload(frame) is { } shape)
            {
                return BadFrame(client, shape, cid);
            }

            (pendingCode, pendingMessage) = CheckSize(frame);
        }

        return SubmitAsync(
            client,
            new AppendCommand
            {
                Origin = client,
                Conv = frame.Conv,
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

    private ValueTask CursorAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(frame.Conv))
        {
            return BadFrame(client, "missing conv", null);
        }

        if (frame.Seq is not { } seq || seq < 0)
        {
            return BadFrame(client, "seq must be a number ≥ 0", frame.Conv);
        }

        return SubmitAsync(client, new CursorCommand { Origin = client, Conv = frame.Conv, Seq = seq, IsRead = frame.T == FrameTypes.Read }, cancellationToken);
    }

    /// <summary>Queues a write for the sequencer, holding one of the socket's in-flight slots until it is done.</summary>
    private async ValueTask SubmitAsync(ConnectionContext client, WriteCommand command, CancellationToken cancellationToken)
    {
        await client.State.InFlight.WaitAsync(cancellationToken);
        try
        {
            await sequencer.SubmitAsync(command, cancellationToken);
        }
        catch
        {
            client.State.InFlight.Release();
            throw;
        }
    }

    /// <summary>Exactly one of body and e2ee, and e2ee an object; null when the shape is right.</summary>
    private static string? CheckPayload(ClientFrame frame)
    {
        var hasE2ee = frame.E2ee is { ValueKind: not JsonValueKind.Null };
        if ((frame.Body is null) == !hasE2ee)
        {
            return "exactly one of body and e2ee is required";
        }

        return hasE2ee && frame.E2ee!.Value.ValueKind != JsonValueKind.Object ? "e2ee must be an object" : null;
    }

    /// <summary>
    /// Size problems are not answered here: the sequencer answers them only if the cid is not a duplicate, as the
    /// protocol orders the checks.
    /// </summary>
    private (string? Code, string? Message) CheckSize(ClientFrame frame)
    {
        if (frame.Body is { } body && Encoding.UTF8.GetByteCount(body) > _options.MaxBodyBytes)
        {
            return (ErrorCodes.TooLarge, $"body is over {_options.MaxBodyBytes} bytes");
        }

        if (frame.E2ee is { ValueKind: JsonValueKind.Object } e2ee && Encoding.UTF8.GetByteCount(e2ee.GetRawText()) > _options.MaxE2eeBytes)
        {
            return (ErrorCodes.TooLarge, $"e2ee is over {_options.MaxE2eeBytes} bytes");
        }

        return (null, null);
    }

    private async ValueTask SyncAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        await Task.Yield(); // a sync reads the store in bulk: not on the socket's event thread
        if (string.IsNullOrEmpty(frame.Conv))
        {
            await BadFrame(client, "missing conv", null);
            return;
        }

        var conv = frame.Conv;
        if (frame.After is not { } after || after < 0 || frame.Limit is < 1)
        {
            await BadFrame(client, "sync needs after ≥ 0 and, if given, limit ≥ 1", conv);
            return;
        }

        var found = await access.ResolveAsync(conv, client.User, cancellationToken);
        if (found.Membership is not { } member)
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(found.ErrorCode!, found.ErrorMessage!, conv));
            return;
        }

        var limit = Math.Min(frame.Limit ?? Limits.MaxSyncLimit, Limits.MaxSyncLimit);
        var from = Math.Max(after, member.FirstSeq - 1);
        var events = from < member.LastVisible ? await store.ReadAfterAsync(conv, from, member.LastVisible, limit, cancellationToken) : [];
        foreach (var e in events)
        {
            await delivery.WaitForRoomAsync(client); // a big page streams as the socket drains, never over its budget
            await delivery.SendToConnectionAsync(client, Frames.Event(e, (client.User, client.Device)));
        }

        var upto = events.Count > 0 ? events[^1].Seq : Math.Min(after, member.LastVisible);
        await delivery.SendToConnectionAsync(client, Frames.Serialize(new SyncedFrame(conv, upto, upto < member.LastVisible)));
    }

    /// <summary>The event at <c>frame.seq</c> of a conversation the client may read, or null after answering the error.</summary>
    private async ValueTask<Storage.EventRecord?> VisibleEventAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(frame.Conv) || frame.Seq is not > 0)
        {
            await BadFrame(client, $"{frame.T} needs conv and seq", frame.Conv);
            return null;
        }

        var found = await access.ResolveAsync(frame.Conv, client.User, cancellationToken);
        if (found.Membership is not { } member)
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(found.ErrorCode!, found.ErrorMessage!, frame.Conv));
            return null;
        }

        var seq = frame.Seq.Value;
        if (seq < member.FirstSeq || seq > member.LastVisible || (await store.ReadAfterAsync(frame.Conv, seq - 1, seq, 1, cancellationToken)) is not [var e])
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(ErrorCodes.NotFound, "no such event", frame.Conv));
            return null;
        }

        return e;
    }

    /// <summary>
    /// A device could not decrypt an event: counted (no content is told), and the sending device is asked, through
    /// every socket of its user, to send it again on a new session.
    /// </summary>
    private async ValueTask DecryptFailedAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (await VisibleEventAsync(client, frame, cancellationToken) is not { } e || e.E2ee is null)
        {
            return;
        }

        metrics.E2eeDecryptFailures.Inc();
        if (e.Sender != client.User || e.Dev != client.Device)
        {
            var ask = Frames.Serialize(new DecryptFailedFrame(e.Conv, e.Seq, client.User, client.Device, e.Dev));
            await delivery.SendToUserAsync(e.Sender, ask);
        }
    }

    /// <summary>
    /// The sender of an event sends it again, encrypted for one device that could not decrypt it (one <c>to</c>
    /// entry); relayed to that user's sockets, never stored.
    /// </summary>
    private async ValueTask ResendAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(frame.User) || frame.Device is not > 0 || frame.E2ee is not { ValueKind: JsonValueKind.Object } e2ee
            || !e2ee.TryGetProperty("to", out var to) || to.ValueKind != JsonValueKind.Array || to.GetArrayLength() != 1
            || to[0].ValueKind != JsonValueKind.Object || !to[0].TryGetProperty("user", out var u) || !u.ValueEquals(frame.User)
            || !to[0].TryGetProperty("device", out var d) || !d.TryGetInt32(out var device) || device != frame.Device)
        {
            await BadFrame(client, "resend needs conv, seq, user, device and e2ee.to with one entry for that device", frame.Conv);
            return;
        }

        if (Encoding.UTF8.GetByteCount(e2ee.GetRawText()) > _options.MaxE2eeBytes)
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(ErrorCodes.TooLarge, $"e2ee is over {_options.MaxE2eeBytes} bytes", frame.Conv));
            return;
        }

        if (await VisibleEventAsync(client, frame, cancellationToken) is not { } e)
        {
            return;
        }

        if (e.Sender != client.User || e.Dev != client.Device || !(await access.CurrentMembersAsync(e.Conv, cancellationToken)).Contains(frame.User))
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(ErrorCodes.Forbidden, "only the device that sent a message resends it, to a member", frame.Conv));
            return;
        }

        metrics.E2eeResends.Inc();
        await delivery.SendToUserAsync(frame.User, Frames.Serialize(new ResendFrame(e.Conv, e.Seq, e.Sender, e.Dev, e2ee)));
    }

    private async ValueTask TypingAsync(ConnectionContext client, ClientFrame frame, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(frame.Conv))
        {
            await BadFrame(client, "missing conv", null);
            return;
        }

        var conv = frame.Conv;
        if (frame.On is not { } on)
        {
            await BadFrame(client, "typing needs on: true or false", conv);
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

        var found = await access.ResolveAsync(conv, client.User, cancellationToken);
        if (found.Membership is not { IsCurrent: true })
        {
            await delivery.SendToConnectionAsync(client, Frames.Error(found.ErrorCode ?? ErrorCodes.Forbidden, found.ErrorMessage ?? "no longer a member of this conversation", conv));
            return;
        }

        var members = await access.CurrentMembersAsync(conv, cancellationToken);
        await delivery.SendToUsersAsync(members, Frames.Serialize(new TypingFrame(conv, client.User, on)), exceptUser: client.User);
    }

    private async ValueTask WatchAsync(ConnectionContext client, ClientFrame frame)
    {
        if (frame.Users is not { } users || users.Length > 1024)
        {
            await BadFrame(client, "watch needs users: a list of at most 1024 handles", null);
            return;
        }

        await Task.Yield(); // up to 1,024 users' memberships are read: not on the socket's event thread
        await presence.WatchAsync(client, users);
    }

    public void OnCommitted(IReadOnlyList<WriteCommand> batch)
    {
        using var sends = delivery.BeginBatch(); // one write per socket for everything this batch sends it
        foreach (var command in batch)
        {
            var origin = command.Origin as ConnectionContext;
            try
            {
                if (command.ErrorCode is { } code)
                {
                    metrics.Rejected.Inc();
                    var reference = command is AppendCommand a ? a.Cid : command.Conv;
                    if (origin is not null)
                    {
                        Done(delivery.SendToConnectionAsync(origin, Frames.Serialize(new ErrorFrame(code, command.ErrorMessage ?? code, reference, command.RetryAfterMs > 0 ? command.RetryAfterMs : null))));
                    }

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
                    case NoticeCommand notice when notice.Event is { } noticed:
                        metrics.Accepted.Inc();
                        if (Names.IsGroup(noticed.Conv))
                        {
                            groupReceipts.Appended(noticed);
                        }

                        Done(delivery.SendEventAsync(new EventDelivery(noticed.Conv, noticed.Seq, Frames.Event(noticed), notice.Members, null, 0, 0)));
                        break;
                }
            }
            catch (Exception ex)
            {
                LogCommitHandlingFailed(ex, command.Conv);
            }
            finally
            {
                origin?.WriteDone();
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
        Done(delivery.SendEventAsync(new EventDelivery(stored.Conv, stored.Seq, Frames.Event(stored), recipients, null, 0, 0)));
    }

    private void Committed(AppendCommand command, ConnectionContext? origin)
    {
        if (command.Ack is { } ack && origin is not null)
        {
            Done(delivery.SendToConnectionAsync(origin, Frames.Serialize(ack)));
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

        // Everyone's devices but the sending one, which has its ack; a send over HTTP reaches the calling device too.
        var exceptDevice = command.Origin is HttpOrigin ? 0 : stored.Dev;
        Done(delivery.SendEventAsync(new EventDelivery(stored.Conv, stored.Seq, Frames.Event(stored), command.Members, stored.Sender, exceptDevice, command.ReceivedAt)));
        push.Offer(stored, command.Members); // devices without a socket get a push, later, from the push worker
    }

    private void Committed(CursorCommand command)
    {
        var user = command.Origin.User;
        var device = command.Origin.Device;
        if (Names.IsGroup(command.Conv))
        {
            // No per-member receipt to the group: the reader's own devices learn the read, authors get aggregates.
            if (command.ReadAdvancedTo is { } ownRead)
            {
                Done(delivery.SendToUserAsync(user, Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Read, ownRead)), exceptDevice: device));
            }

            groupReceipts.CursorMoved(command.Conv, user, command.DeliveredAdvancedTo, command.ReadAdvancedTo);
            return;
        }

        if (command.DeliveredAdvancedTo is { } delivered)
        {
            // The other member's devices; the mover's own devices keep their own delivered state.
            Done(delivery.SendToUsersAsync(command.Members, Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Delivered, delivered)), exceptUser: user));
        }

        if (command.ReadAdvancedTo is { } read)
        {
            var frame = Frames.Serialize(new ReceiptFrame(command.Conv, user, ReceiptKinds.Read, read));
            Done(delivery.SendToUsersAsync(command.Members, frame, exceptUser: user));
            Done(delivery.SendToUserAsync(user, frame, exceptDevice: device));
        }
    }

    /// <summary>Delivery calls on the sequencer's thread complete at once in process; a distributed hub's are not waited for.</summary>
    private void Done(ValueTask sent)
    {
        if (!sent.IsCompletedSuccessfully)
        {
            _ = ObserveAsync(sent);
        }
    }

    private async Task ObserveAsync(ValueTask sent)
    {
        try
        {
            await sent;
        }
        catch (Exception ex)
        {
            LogDeliveryFailed(ex);
        }
    }

    [LoggerMessage(EventId = 2002, Level = LogLevel.Error, Message = "Acking or delivering a committed command in {Conv} failed")]
    private partial void LogCommitHandlingFailed(Exception exception, string conv);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Error, Message = "A delivery failed; receivers recover it from the store")]
    private partial void LogDeliveryFailed(Exception exception);

    private ILogger Logger => logger;
}
