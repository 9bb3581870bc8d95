using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Client;

public sealed partial class SwitchboardClient
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<AckFrame>> _waiting = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Conversation> _conversations = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _recvPending = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly TaskCompletionSource _firstWelcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ClientWebSocket? _socket;
    private Task? _loop;
    private long _order = -1;
    private int _heartbeat = 30;
    private string[]? _watching;
    private long _lastFrameAt;
    private long _connectedAt;
    private volatile bool _welcomed;

    /// <summary>
    /// Starts the connection (and keeps it up until disposed). Completes at the first welcome; throws
    /// <see cref="SwitchboardException"/> with <c>unauthorized</c> if the server refuses the token.
    /// </summary>
    public async Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        if (_loop is null)
        {
            await PublishKeysAsync(cancellationToken);
            var outbox = await _state.LoadOutboxAsync();
            var next = outbox.Count > 0 ? outbox[^1].Order : -1;
            // Raise, never lower: sends made before ConnectAsync already took numbers.
            for (var current = Volatile.Read(ref _order); current < next && Interlocked.CompareExchange(ref _order, next, current) != current; current = Volatile.Read(ref _order))
            {
            }
            _loop = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
        }

        await _firstWelcome.Task.WaitAsync(cancellationToken);
    }

    /// <summary>The wait a draining server asks for in its close reason (<c>retry_after=</c> milliseconds), if any.</summary>
    internal static TimeSpan? RetryAfter(string? reason)
    {
        const string Key = "retry_after=";
        var at = reason?.IndexOf(Key, StringComparison.Ordinal) ?? -1;
        if (at < 0)
        {
            return null;
        }

        var digits = reason![(at + Key.Length)..].TakeWhile(char.IsAsciiDigit).ToArray();
        return int.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ms) && ms <= 60_000
            ? TimeSpan.FromMilliseconds(ms)
            : null;
    }

    private async Task RunAsync(CancellationToken stop)
    {
        var attempt = 0;
        var pinger = PingLoopAsync(stop);
        var recv = RecvLoopAsync(stop);
        while (!stop.IsCancellationRequested)
        {
            SetState(ConnectionState.Connecting, null);
            int? closeCode = null;
            string? closeReason = null;
            var welcomed = false;
            try
            {
                using var socket = new ClientWebSocket();
                socket.Options.KeepAliveInterval = TimeSpan.Zero;
                using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    timeout.CancelAfter(_options.ConnectTimeout);
                    var server = Server;
                    var ws = new UriBuilder(server) { Scheme = server.Scheme == "https" ? "wss" : "ws", Path = server.AbsolutePath.TrimEnd('/') + "/v1/ws" }.Uri;
                    await socket.ConnectAsync(ws, timeout.Token);
                }

                // hello goes first on the new socket, before anyone else may write to it: a frame before hello is
                // a protocol error the server answers with 1008, which would stop this client for good.
                var hello = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new ClientFrame { T = FrameTypes.Hello, V = Limits.Version, Token = _token }, SwitchboardJsonContext.Default.ClientFrame));
                await socket.SendAsync(hello, WebSocketMessageType.Text, true, stop);
                _welcomed = false;
                _connectedAt = Environment.TickCount64;
                Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
                _socket = socket;
                await ReceiveLoopAsync(socket, () => (attempt, welcomed) = (0, true), stop);
                closeCode = (int?)socket.CloseStatus;
                closeReason = socket.CloseStatusDescription;
            }
            catch (Exception ex) when (!stop.IsCancellationRequested || ex is OperationCanceledException)
            {
                // Any failure of one connection (network, a bad frame, the state store) ends this attempt only.
                closeCode = (int?)_socket?.CloseStatus;
                closeReason = _socket?.CloseStatusDescription;
            }
            finally
            {
                _socket = null;
            }

            if (stop.IsCancellationRequested)
            {
                break;
            }

            if (closeCode is CloseCodes.Policy or CloseCodes.Replaced)
            {
                // The token was refused or revoked, or a newer socket of this device took over: retrying would fight it.
                SetState(ConnectionState.Stopped, closeCode);
                var reason = new SwitchboardException(closeCode == CloseCodes.Policy ? ErrorCodes.Unauthorized : "replaced",
                    closeCode == CloseCodes.Policy ? "the server refused this device's token" : "a newer connection of this device took over");
                _firstWelcome.TrySetException(reason);
                FailWaiters(reason);
                break;
            }

            SetState(ConnectionState.Reconnecting, closeCode);
            var wait = Backoff.Delay(attempt++, _options.ReconnectBaseDelay, _options.ReconnectMaxDelay);
            if (closeCode == CloseCodes.Draining)
            {
                // The node is going away: another one, after the wait it asked for (already jittered by it).
                NextServer();
                wait = RetryAfter(closeReason) ?? wait;
            }
            else if (!welcomed && _servers.Length > 1)
            {
                NextServer(); // this one could not be reached (or refused): try the next node
            }

            try
            {
                await Task.Delay(wait, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        try
        {
            await Task.WhenAll(pinger, recv);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task ReceiveLoopAsync(ClientWebSocket socket, Action connected, CancellationToken stop)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var count = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                if (count == buffer.Length)
                {
                    Array.Resize(ref buffer, buffer.Length * 2);
                }

                result = await socket.ReceiveAsync(buffer.AsMemory(count), stop);
                count += result.Count;
            }
            while (!result.EndOfMessage);

            if (result.MessageType == WebSocketMessageType.Close)
            {
                return;
            }

            Volatile.Write(ref _lastFrameAt, Environment.TickCount64);
            await HandleAsync(buffer.AsMemory(0, count), connected, stop);
        }
    }

    private async ValueTask HandleAsync(ReadOnlyMemory<byte> json, Action connected, CancellationToken stop)
    {
        var context = SwitchboardJsonContext.Default;
        switch (TypeOf(json.Span))
        {
            case FrameTypes.Welcome:
                var welcome = JsonSerializer.Deserialize(json.Span, context.WelcomeFrame)!;
                User = welcome.User;
                Device = welcome.Device;
                _heartbeat = Math.Max(1, welcome.Heartbeat);
                _welcomed = true;
                foreach (var (_, conversation) in _conversations)
                {
                    conversation.Syncing = false; // a sync cut off with the old socket is asked again when needed
                }

                SetState(ConnectionState.Connected, null);
                _firstWelcome.TrySetResult();
                await ResendOutboxAsync(stop);
                if (_watching is { } watching)
                {
                    await SendRawAsync(JsonSerializer.Serialize(new ClientFrame { T = FrameTypes.Watch, Users = watching }, context.ClientFrame), stop);
                }

                break;
            case FrameTypes.Live:
                connected(); // only a connection that got this far resets the backoff
                SetState(ConnectionState.Live, null);
                break;
            case FrameTypes.Ack:
                var ack = JsonSerializer.Deserialize(json.Span, context.AckFrame)!;
                await _state.RemovePendingAsync(ack.Cid);
                await OnSealedAckAsync(ack);
                await OnOwnAckAsync(ack, stop);
                if (_waiting.TryRemove(ack.Cid, out var waiter))
                {
                    waiter.TrySetResult(ack);
                }

                break;
            case FrameTypes.Error:
                await OnErrorAsync(JsonSerializer.Deserialize(json.Span, context.ErrorFrame)!, stop);
                break;
            case FrameTypes.Msg:
                await OnMessageAsync(JsonSerializer.Deserialize(json.Span, context.MsgFrame)!, stop);
                break;
            case FrameTypes.Synced:
                await OnSyncedAsync(JsonSerializer.Deserialize(json.Span, context.SyncedFrame)!, stop);
                break;
            case FrameTypes.Receipt:
                await _events.Writer.WriteAsync(new ReceiptReceived(JsonSerializer.Deserialize(json.Span, context.ReceiptFrame)!), stop);
                break;
            case FrameTypes.Typing:
                await _events.Writer.WriteAsync(new TypingReceived(JsonSerializer.Deserialize(json.Span, context.TypingFrame)!), stop);
                break;
            case FrameTypes.DecryptFailed when _e2e is not null:
                var failed = JsonSerializer.Deserialize(json.Span, context.DecryptFailedFrame)!;
                if (failed.Dev == Device)
                {
                    _ = ResendAsync(failed, stop);
                }

                break;
            case FrameTypes.Resend when _e2e is not null:
                await OnResendAsync(JsonSerializer.Deserialize(json.Span, context.ResendFrame)!, stop);
                break;
            case FrameTypes.KeysLow when _e2e is not null:
                _ = TopUpKeysAsync(stop);
                break;
            case FrameTypes.Presence:
                await _events.Writer.WriteAsync(new PresenceReceived(JsonSerializer.Deserialize(json.Span, context.PresenceFrame)!), stop);
                break;
        }
    }

    private async ValueTask OnErrorAsync(ErrorFrame error, CancellationToken stop)
    {
        if (error.Code == ErrorCodes.DevicesChanged && await OnDevicesChangedAsync(error, stop))
        {
            return; // encrypted again for the devices listed, same cid
        }

        if (error.Ref is { } cid && _waiting.ContainsKey(cid))
        {
            switch (error.Code)
            {
                case ErrorCodes.RateLimited:
                case ErrorCodes.Unavailable:
                case ErrorCodes.Internal:
                    // Transient: the send stays in the outbox and goes again with the same cid.
                    var wait = error.Code == ErrorCodes.RateLimited && error.RetryAfter is { } ms ? TimeSpan.FromMilliseconds(ms) : TimeSpan.FromSeconds(1);
                    _ = RetryLaterAsync(cid, wait, stop);
                    return;
                default:
                    await _state.RemovePendingAsync(cid);
                    if (_waiting.TryRemove(cid, out var waiter))
                    {
                        waiter.TrySetException(new SwitchboardException(error.Code, error.Message));
                    }

                    return;
            }
        }

        if (error.Ref is { } conv && _conversations.TryGetValue(conv, out var conversation))
        {
            conversation.Syncing = false; // a refused sync must not freeze the conversation
        }

        await _events.Writer.WriteAsync(new ServerError(error), stop);
    }

    private async Task RetryLaterAsync(string cid, TimeSpan wait, CancellationToken stop)
    {
        try
        {
            await Task.Delay(wait, stop);
            foreach (var pending in await _state.LoadOutboxAsync())
            {
                if (pending.Cid == cid)
                {
                    await SendRawAsync(pending.Frame, stop);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<AckFrame> SendFrameAsync(ClientFrame frame, CancellationToken cancellationToken) =>
        await await EnqueueAsync(frame, cancellationToken);

    /// <summary>Puts a frame in the outbox and on the wire; the task it gives completes with the ack.</summary>
    private async Task<Task<AckFrame>> EnqueueAsync(ClientFrame frame, CancellationToken cancellationToken)
    {
        frame.Cid ??= Guid.NewGuid().ToString();
        var json = JsonSerializer.Serialize(frame, SwitchboardJsonContext.Default.ClientFrame);
        var waiter = new TaskCompletionSource<AckFrame>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[frame.Cid] = waiter;
        if (_stop.IsCancellationRequested || State == ConnectionState.Stopped)
        {
            _waiting.TryRemove(frame.Cid, out _);
            throw new SwitchboardException(ErrorCodes.Unavailable, "the client is stopped; the send was not queued");
        }

        // In the outbox before it is sent: a crash or a cut from here on ends in a resend with the same cid.
        await _state.AddPendingAsync(new PendingSend(frame.Cid, json, Interlocked.Increment(ref _order)));
        await SendRawAsync(json, cancellationToken);
        return WaitAsync(waiter, cancellationToken);

        static async Task<AckFrame> WaitAsync(TaskCompletionSource<AckFrame> waiter, CancellationToken cancellationToken)
        {
            using (cancellationToken.Register(static w => ((TaskCompletionSource<AckFrame>)w!).TrySetCanceled(), waiter))
            {
                return await waiter.Task;
            }
        }
    }

    private Task SendTransientAsync(ClientFrame frame, CancellationToken cancellationToken) =>
        SendRawAsync(JsonSerializer.Serialize(frame, SwitchboardJsonContext.Default.ClientFrame), cancellationToken);

    private void FailWaiters(Exception reason)
    {
        foreach (var (cid, waiter) in _waiting)
        {
            if (_waiting.TryRemove(cid, out _))
            {
                waiter.TrySetException(reason);
            }
        }
    }

    private async Task ResendOutboxAsync(CancellationToken stop)
    {
        foreach (var pending in await _state.LoadOutboxAsync())
        {
            await SendRawAsync(pending.Frame, stop);
        }
    }

    /// <summary>Sends on the current socket if there is one; otherwise the outbox (or nothing, for transient frames) covers it.</summary>
    private async Task<bool> SendRawAsync(string json, CancellationToken cancellationToken)
    {
        var socket = _socket;
        if (socket is not { State: WebSocketState.Open })
        {
            return false;
        }

        var bytes = Encoding.UTF8.GetBytes(json);
        await _sendLock.WaitAsync(cancellationToken);
        try
        {
            await socket.SendAsync(bytes, WebSocketMessageType.Text, true, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or IOException
                                       || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            // The socket broke (an aborted socket cancels its pending send): the receive loop notices and
            // reconnects; the outbox resends.
            return false;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private async Task CloseSocketAsync()
    {
        if (_socket is { State: WebSocketState.Open } socket)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
            {
                socket.Abort();
            }
        }
    }

    private async Task PingLoopAsync(CancellationToken stop)
    {
        var ping = JsonSerializer.Serialize(new ClientFrame { T = FrameTypes.Ping }, SwitchboardJsonContext.Default.ClientFrame);
        while (!stop.IsCancellationRequested)
        {
            // Twice per heartbeat: one lost ping never costs the presence TTL (two heartbeats).
            await Task.Delay(TimeSpan.FromSeconds(_heartbeat / 2.0), stop);
            if (_socket is not { } socket)
            {
                continue;
            }

            // Every ping is answered, so two heartbeats without any frame (or no welcome within the connect
            // timeout) mean the path is dead even if TCP has not said so: drop it and reconnect.
            var silentMs = Environment.TickCount64 - Volatile.Read(ref _lastFrameAt);
            if (silentMs > _heartbeat * 2_000L || (!_welcomed && Environment.TickCount64 - _connectedAt > _options.ConnectTimeout.TotalMilliseconds))
            {
                socket.Abort();
                continue;
            }

            await SendRawAsync(ping, stop);
        }
    }

    private void SetState(ConnectionState state, int? closeCode)
    {
        if (State == state && closeCode is null)
        {
            return;
        }

        State = state;
        _events.Writer.TryWrite(new ConnectionChanged(state, closeCode));
    }

    private static string? TypeOf(ReadOnlySpan<byte> json) => FrameFields.Type(json);
}
