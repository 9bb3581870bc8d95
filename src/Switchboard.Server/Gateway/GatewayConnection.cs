using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Switchboard.Protocol;
using Switchboard.Server.Delivery;
using Switchboard.Server.Messaging;

namespace Switchboard.Server.Gateway;

/// <summary>
/// One WebSocket, from accept to close. <see cref="RunAsync"/> is its whole lifetime: a reader loop (this
/// method), one writer loop draining a byte-bounded queue, and a replay that streams the backlog from the store.
/// </summary>
internal sealed partial class GatewayConnection : IDeviceSession, IThreadPoolWorkItem
{
    private static long _lastConnectionId;

    private readonly WebSocket _socket;
    private readonly GatewayServices _services;
    private readonly GatewayOptions _options;
    /// <summary>Guards the outbound queue and the replay's hand-over to live delivery (one lock: it is per socket).</summary>
    private readonly Lock _lock = new();

    /// <summary>Frames waiting for the socket; made when the first one arrives and dropped when drained, so an idle socket holds none.</summary>
    private Queue<Outbound>? _queue;
    private readonly CancellationTokenSource _abort = new();
    private readonly Action? _closed;
    private readonly GatewaySocketStream? _stream;
    private long _queuedBytes;
    private long _lastTraffic;
    private int _closeCode;
    private volatile bool _flushBeforeClose;
    private string _closeReason = "";
    private ConnectionContext? _context;
    private string? _token;

    /// <summary>Its place among the unauthenticated connections, left at hello and given up at the end.</summary>
    private GatewayAdmission.Slot? _admission;

    /// <param name="admission">Its place among the unauthenticated connections (see <see cref="GatewayAdmission"/>).</param>
    /// <param name="closed">Called once the connection has ended and its socket is disposed.</param>
    /// <param name="stream">The stream under the WebSocket when the gateway owns the socket, for batched sends.</param>
    public GatewayConnection(WebSocket socket, GatewayServices services, GatewayAdmission.Slot admission, Action? closed = null, GatewaySocketStream? stream = null)
    {
        _admission = admission;
        _closed = closed;
        _stream = stream;
        _socket = socket;
        _services = services;
        _options = services.Options;
        _lastTraffic = Environment.TickCount64;
    }

    public string User { get; private set; } = "";
    public int Device { get; private set; }
    public long ConnectionId { get; } = Interlocked.Increment(ref _lastConnectionId);

    /// <summary>Milliseconds (Environment.TickCount64) of the last frame received.</summary>
    public long LastTraffic => Volatile.Read(ref _lastTraffic);

    /// <summary>
    /// The server is stopping: close with 4003 (at once, or at a random moment of the drain window), telling the
    /// client how long to wait before it reconnects (<c>retry_after=</c> ms in the reason: a second of jitter), so
    /// a node's clients reach the other nodes spread out rather than in one wave.
    /// </summary>
    private void Drain()
    {
        var window = _services.DrainWindowMs;
        var reason = $"server draining; retry_after={Random.Shared.Next(250, 1_250)}";
        if (window <= 0)
        {
            Close(CloseCodes.Draining, reason);
            return;
        }

        _ = Task.Delay(Random.Shared.Next(window)).ContinueWith(static (_, s) =>
        {
            var (connection, reason) = ((GatewayConnection, string))s!;
            connection.Close(CloseCodes.Draining, reason);
        }, (this, reason), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        using var stoppingRegistration = stopping.Register(static s => ((GatewayConnection)s!).Drain(), this);
        // Reads carry no token; cancelling _abort (a peer that ignores our close, or the end) aborts the socket.
        using var abortRegistration = _abort.Token.Register(static s => ((WebSocket)s!).Abort(), _socket);
        var registered = false;
        Task replay = Task.CompletedTask;
        try
        {
            var unlinks = _services.Accounts.Unlinks;
            if (await HandshakeAsync() is not { } identity)
            {
                return;
            }

            _admission!.Authenticated();
            if (!_admission.HoldsLimits)
            {
                _admission = null; // nothing left to give back: an idle socket holds no slot
            }

            User = identity.User;
            Device = identity.Device;
            _context = new ConnectionContext(User, Device, ConnectionId, new ClientState(_services.Rates.For(User), _options.MaxInFlightPerSocket));
            var replaced = _services.Connections.Register(this);
            registered = true;
            _services.Metrics.SocketOpened();
            replaced?.Close(CloseCodes.Replaced, "replaced by a newer socket of this device");
            await _services.Router.AddAsync(User, Device, ConnectionId);
            if (_services.Accounts.Unlinks != unlinks && await _services.Accounts.AuthenticateAsync(_token!, CancellationToken.None) is null)
            {
                // Unlinked between the handshake and registering: the unlink could not see this socket.
                Refuse(ErrorCodes.Unauthorized, "device unlinked");
                return;
            }

            await _services.Presence.TouchAsync(User);
            // Bookkeeping, not a promise: written without an fsync of its own.
            await _services.Accounts.TouchDeviceAsync(User, Device, CancellationToken.None);
            Send(Frames.Serialize(new WelcomeFrame(User, Device, _services.Time.GetUtcNow().ToUnixTimeMilliseconds(), _options.HeartbeatSeconds)));
            // On the pool, not on the socket's event thread: the replay reads the store page by page.
            replay = Task.Run(() => ReplayAsync(identity.LastActive), CancellationToken.None);

            // The read loop, here rather than in a method of its own: an idle socket waits inside it, and each
            // async method suspended there is one more object per socket.
            while (true)
            {
                // An idle socket waits here, with a zero-byte read: no buffer, and no frame of ReceiveFrameAsync
                // suspended (it runs when data is there, mostly without suspending at all).
                var waited = await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
                if (waited.MessageType == WebSocketMessageType.Close || await ReceiveFrameAsync(waited) is not { } message)
                {
                    return;
                }

                var receivedAt = Stopwatch.GetTimestamp();
                var touched = _services.Presence.TouchAsync(User);
                if (!touched.IsCompletedSuccessfully)
                {
                    await touched;
                }

                var frame = FrameReader.TryParse(message.Span, out var invalid);
                var badCid = frame is null ? CidOf(message.Span) : null;
                ReleaseReceiveBuffer(); // the frame is parsed into strings; its bytes are not needed
                if (frame is null)
                {
                    _services.BadFrame(User, Device, invalid!);
                    Send(Frames.Error(ErrorCodes.BadFrame, $"not a valid frame: {invalid}", badCid));
                    continue;
                }

                try
                {
                    await _services.Messages.HandleAsync(_context, frame, receivedAt, _abort.Token);
                }
                catch (OperationCanceledException)
                {
                    throw;
                }
                catch (Exception ex)
                {
                    var reference = Guid.NewGuid().ToString("N")[..12];
                    _services.LogFrameFailed(ex, User, Device, reference);
                    Send(Frames.Error(ErrorCodes.Internal, $"internal error, reference {reference}", frame.Cid));
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            // the peer went away or the socket was aborted; cleanup below
        }
        catch (Exception ex)
        {
            _services.LogConnectionFailed(ex, User, Device);
        }
        finally
        {
            Close(1000, "bye");
            await Task.WhenAny(CloseSent.Task, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
            await AwaitPeerCloseAsync();
            await _abort.CancelAsync();
            _socket.Abort();
            await replay; // never throws: it catches its own failures
            try
            {
                if (registered)
                {
                    await CleanupAsync();
                }
            }
            finally
            {
                _socket.Dispose();
                _abort.Dispose();
                _admission?.Dispose();
                _closed?.Invoke(); // always: the listener counts on it to finish shutting down
            }
        }
    }

    /// <summary>Each step on its own, so one failure cannot leave the user online or a watcher behind.</summary>
    private async Task CleanupAsync()
    {
        _services.Metrics.SocketClosed();
        _services.Connections.Unregister(this);
        var last = false;
        await TryAsync(async () => last = await _services.Router.RemoveAsync(User, Device, ConnectionId));
        await TryAsync(() =>
        {
            _services.Rates.Release(User);
            return ValueTask.CompletedTask;
        });
        await TryAsync(() => _services.Presence.DisconnectedAsync(_context!, last));
    }

    private async Task TryAsync(Func<ValueTask> step)
    {
        try
        {
            await step();
        }
        catch (Exception ex)
        {
            _services.LogConnectionFailed(ex, User, Device);
        }
    }

    public ValueTask WaitForRoomAsync() => WaitForRoomCoreAsync();

    /// <summary>Requests a close with <paramref name="code"/>; the first request wins. Never waits.</summary>
    public void Close(int code, string reason) => Close(code, reason, flush: false);

    /// <summary>With <paramref name="flush"/>, frames already queued (an error explaining the close) go out first.</summary>
    private void Close(int code, string reason, bool flush)
    {
        if (Volatile.Read(ref _closeCode) != 0)
        {
            return;
        }

        if (flush)
        {
            _flushBeforeClose = true;
        }

        // The reason first: the writer may see the code at once. (Two closers racing may pair one's code with the
        // other's reason; only the text can be off.)
        _closeReason = reason;
        if (Interlocked.CompareExchange(ref _closeCode, code, 0) != 0)
        {
            return;
        }

        Kick(inline: false); // someone must send the close frame
        try
        {
            // A peer that does not answer our close in time is cut off.
            _abort.CancelAfter(TimeSpan.FromSeconds(3));
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task<Accounts.DeviceIdentity?> HandshakeAsync()
    {
        // Raced against the hello timeout, once per connection; a stranger's first frame may be a few KiB at most.
        var first = ReceiveFrameAsync(maxBytes: _options.MaxHelloBytes).AsTask();
        // Not linked to _abort: a linked source leaves a spent registration node on _abort for the socket's life.
        // An aborted socket fails `first`, which ends the wait as well.
        using (var timer = new CancellationTokenSource())
        {
            var timeout = Task.Delay(TimeSpan.FromSeconds(_options.HelloTimeoutSeconds), timer.Token);
            var winner = await Task.WhenAny(first, timeout);
            await timer.CancelAsync(); // frees the timer now rather than holding it for the whole timeout
            if (winner != first)
            {
                // The read stays pending; it is what sees the peer's close (a second read may not start beside it).
                _pendingRead = first;
                Close(CloseCodes.Policy, "no hello in time");
                return null;
            }
        }

        if (await first is not { } message)
        {
            return null; // closed, too big (already answered) or not text
        }

        var hello = FrameReader.TryParse(message.Span, out var invalid);
        ReleaseReceiveBuffer();
        if (hello?.T != FrameTypes.Hello)
        {
            _services.BadFrame("-", 0, invalid ?? "the first frame is not hello");
            Refuse(ErrorCodes.BadFrame, invalid is null ? "the first frame must be hello" : $"the first frame must be hello: {invalid}");
            return null;
        }

        if (hello.V != Limits.Version)
        {
            Refuse(ErrorCodes.BadFrame, $"unsupported protocol version; this server speaks v{Limits.Version}");
            return null;
        }

        if (string.IsNullOrEmpty(hello.Token) || await _services.Accounts.AuthenticateAsync(hello.Token) is not { } identity)
        {
            Refuse(ErrorCodes.Unauthorized, "bad or revoked token");
            return null;
        }

        _token = hello.Token;
        return identity;
    }

    private void Refuse(string code, string message)
    {
        Send(Frames.Error(code, message));
        Close(CloseCodes.Policy, message, flush: true);
    }

    /// <summary>
    /// Reads one whole text message. Null when the socket closed, a frame went over the limit (closed 1009), or
    /// after a binary frame (answered bad_frame, then the next message is read).
    /// </summary>
    /// <param name="waited">The result of a zero-byte read that found the message's start, if the caller made one.</param>
    /// <param name="maxBytes">The largest message accepted: <c>MaxFrameBytes</c>, or <c>MaxHelloBytes</c> for the first.</param>
    private async ValueTask<ReadOnlyMemory<byte>?> ReceiveFrameAsync(ValueWebSocketReceiveResult? waited = null, int maxBytes = 0)
    {
        if (maxBytes == 0)
        {
            maxBytes = _options.MaxFrameBytes;
        }

        while (true)
        {
            // Wait for the next message with a zero-byte read, holding no buffer: most sockets are idle most of
            // the time, and a buffer each is memory per connection. The buffer is rented once data is there and
            // given back as soon as the frame is parsed (ReleaseReceiveBuffer). Reads take no token (a token
            // costs a registration per read, per socket); closing aborts the socket instead.
            var result = waited ?? await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
            waited = null;
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }

            var buffer = _receiveBuffer ??= ArrayPool<byte>.Shared.Rent(1024);
            var count = 0;
            while (!result.EndOfMessage)
            {
                if (count == buffer.Length)
                {
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, maxBytes + 1));
                    buffer.AsSpan(0, count).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    _receiveBuffer = buffer = bigger;
                }

                result = await _socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }

                count += result.Count;
                if (count > maxBytes)
                {
                    Close(CloseCodes.TooBig, "frame too big");
                    return null;
                }
            }

            Volatile.Write(ref _lastTraffic, Environment.TickCount64);
            if (result.MessageType == WebSocketMessageType.Binary)
            {
                ReleaseReceiveBuffer();
                Send(Frames.Error(ErrorCodes.BadFrame, "binary frames are not accepted; send UTF-8 JSON text"));
                continue;
            }

            return buffer.AsMemory(0, count);
        }
    }

    /// <summary>Gives the receive buffer back; the frame it held must not be used after this.</summary>
    private void ReleaseReceiveBuffer()
    {
        if (_receiveBuffer is { } buffer)
        {
            _receiveBuffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private byte[]? _receiveBuffer;

    /// <summary>The cid of a frame that failed to bind (a field of the wrong type), so its error can name it.</summary>
    private static string? CidOf(ReadOnlySpan<byte> json) => FrameFields.String(json, "cid"u8);

    /// <summary>
    /// After our close frame, reads and discards until the peer's close: closing TCP with unread input would
    /// reset the connection and could lose the close frame (and its code) on the way to the client.
    /// </summary>
    private async Task AwaitPeerCloseAsync()
    {
        if (_socket.State != WebSocketState.CloseSent)
        {
            return;
        }

        var scratch = new byte[4096];
        try
        {
            if (_pendingRead is { } pending)
            {
                // The hello read never finished: wait for it instead (the peer's close, or the 3 s abort, ends it).
                await pending;
                return;
            }

            while (true)
            {
                var result = await _socket.ReceiveAsync(scratch.AsMemory(), _abort.Token);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException or InvalidOperationException)
        {
        }
    }

    /// <summary>A read left running when the hello did not come in time.</summary>
    private Task? _pendingRead;

    private readonly record struct Outbound(byte[] Bytes, long ReceivedAt);
}
