using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Switchboard.Cli.Bench;

/// <summary>
/// A lean protocol connection for load generation: no outbox, no dedup, just frames. Sends are serialised by a
/// lock (one sender per socket); frames are handed to a callback as raw UTF-8, so the caller parses only what it
/// needs. Every frame reaches the callback, <c>welcome</c> and <c>live</c> included.
/// </summary>
internal sealed class BenchConnection : IAsyncDisposable
{
    /// <summary>How long connect, upgrade, hello and the replay up to <c>live</c> may take together by default.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(30);

    // IPPROTO_IP / IP_BIND_ADDRESS_NO_PORT from linux/in.h; .NET has no name for them.
    private const int SolIp = 0;
    private const int IpBindAddressNoPort = 24;

    // One handler per source address, shared by all sockets from it: the connect callback learns the address from
    // its handler (ClientWebSocket makes the request, so nothing can ride on it), and a handler per socket would
    // cost memory per socket.
    private static readonly ConcurrentDictionary<IPAddress, HttpMessageInvoker> Invokers = new();

    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly TaskCompletionSource _live = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Action<ReadOnlyMemory<byte>>? _onFrame;
    private Task? _receiver;
    private int _bufferSize = 256 * 1024;
    private long _lastSentMs;

    public int? CloseStatus => (int?)_socket.CloseStatus;

    /// <summary>The <c>heartbeat</c> of the server's welcome: the longest a client may stay silent.</summary>
    public int HeartbeatSeconds { get; private set; } = 30;

    /// <summary>Environment.TickCount64 of the last frame sent, so an idle client knows when a ping is due.</summary>
    public long LastSentMs => Volatile.Read(ref _lastSentMs);

    /// <summary>The socket has stopped receiving: closed by the server, failed, or aborted.</summary>
    public bool IsClosed => _receiver is { IsCompleted: true };

    /// <param name="bufferSize">Receive buffer; it grows for a bigger frame and shrinks back after it.</param>
    /// <param name="localAddress">Source address to bind the socket to, or null to let the kernel choose.</param>
    public static async Task<BenchConnection> ConnectAsync(Uri uri, string token, Action<ReadOnlyMemory<byte>> onFrame, CancellationToken cancellationToken,
        int bufferSize = 256 * 1024, IPAddress? localAddress = null, TimeSpan? timeout = null)
    {
        var connection = new BenchConnection { _onFrame = onFrame, _bufferSize = bufferSize };
        connection._socket.Options.KeepAliveInterval = TimeSpan.Zero;
        var limit = timeout ?? DefaultConnectTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(limit);
        try
        {
            if (localAddress is null)
            {
                await connection._socket.ConnectAsync(uri, deadline.Token);
            }
            else
            {
                await connection._socket.ConnectAsync(uri, Invokers.GetOrAdd(localAddress, CreateInvoker), deadline.Token);
            }

            connection._receiver = connection.ReceiveLoopAsync();
            await connection.SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"hello\",\"v\":1,\"token\":\"{token}\"}}"), deadline.Token);
            await connection._live.Task.WaitAsync(deadline.Token);
            return connection;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await connection.DisposeAsync();
            throw new TimeoutException($"no live within {limit.TotalSeconds:0.#} s");
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private static HttpMessageInvoker CreateInvoker(IPAddress localAddress) => new(new SocketsHttpHandler
    {
        UseProxy = false,
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(localAddress.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                if (OperatingSystem.IsLinux())
                {
                    // Leave the port to connect(), which picks it per (source, destination) as an unbound socket
                    // does; bind() alone would reserve a port on that address for every destination.
                    socket.SetRawSocketOption(SolIp, IpBindAddressNoPort, BitConverter.GetBytes(1));
                }

                socket.Bind(new IPEndPoint(localAddress, 0));
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    });

    public async ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken);
        try
        {
            Volatile.Write(ref _lastSentMs, Environment.TickCount64);
            await _socket.SendAsync(frame, WebSocketMessageType.Text, true, cancellationToken);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Drops the socket without a close handshake, as a client losing its network does.</summary>
    public void Abort() => _socket.Abort();

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[_bufferSize];
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2); // a rare big frame (a group's member list)
                    }

                    result = await _socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                    count += result.Count;
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _live.TrySetException(new InvalidOperationException($"closed by server: {_socket.CloseStatus} {_socket.CloseStatusDescription}"));
                    return;
                }

                var frame = buffer.AsMemory(0, count);
                try
                {
                    if (!_live.Task.IsCompleted)
                    {
                        switch (FrameType(frame.Span))
                        {
                            case "welcome":
                                HeartbeatSeconds = (int)Math.Clamp(NumberField(frame.Span, "heartbeat"u8) ?? 30, 1, 3600);
                                break;
                            case "live":
                                _live.TrySetResult();
                                break;
                        }
                    }

                    _onFrame!(frame);
                }
                catch (Exception ex) when (ex is JsonException or InvalidOperationException)
                {
                    await Console.Error.WriteLineAsync($"bad frame from server: {ex.Message}");
                }

                if (buffer.Length > _bufferSize)
                {
                    buffer = new byte[_bufferSize];
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            _live.TrySetException(ex);
        }
    }

    /// <summary>The <c>t</c> of a frame, read without building a document.</summary>
    public static string? FrameType(ReadOnlySpan<byte> json) => StringField(json, "t"u8);

    /// <summary>A top-level string field of a frame, or null.</summary>
    public static string? StringField(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name) => Protocol.FrameFields.String(json, name);

    /// <summary>A top-level integer field of a frame (<c>seq</c>, <c>heartbeat</c>, <c>retry_after</c>), or null.</summary>
    public static long? NumberField(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name)
    {
        var reader = new Utf8JsonReader(json);
        return Seek(ref reader, name) && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) ? value : null;
    }

    /// <summary>Moves the reader onto the value of a top-level property; false if the frame has none.</summary>
    private static bool Seek(ref Utf8JsonReader reader, ReadOnlySpan<byte> name)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var match = reader.ValueTextEquals(name);
            reader.Read();
            if (match)
            {
                return true;
            }

            reader.Skip();
        }

        return false;
    }

    public async ValueTask DisposeAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
            {
            }
        }

        _socket.Abort();
        if (_receiver is not null)
        {
            await _receiver;
        }

        _socket.Dispose();
        _sendLock.Dispose();
    }
}
