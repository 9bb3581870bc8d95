using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Switchboard.Bench;

/// <summary>
/// A lean protocol connection for load generation: no outbox, no dedup, just frames. Sends are serialised by a
/// lock (one sender per socket); frames are handed to a callback as raw UTF-8, so the caller parses only what it
/// needs. Every frame reaches the callback, <c>welcome</c> and <c>live</c> included.
/// </summary>
/// <remarks>
/// It speaks WebSocket (RFC 6455) itself over a plain socket rather than through <c>ClientWebSocket</c>: the
/// generator shares the machine with the server, and the HTTP client stack behind <c>ClientWebSocket</c> (a handler,
/// request and response objects, header collections, a connection pool per upgrade) made a connect cost the
/// generator more CPU than it cost the server. Here a connect is one request written from a template and one
/// response scanned for its status line and accept key; a frame is a header, a mask and one write; the receive
/// buffer is one array that holds as many frames as one read brings and is handed out in place.
/// </remarks>
internal sealed class BenchConnection : IAsyncDisposable
{
    /// <summary>How long connect, upgrade, hello and the replay up to <c>live</c> may take together by default.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(30);

    // IPPROTO_IP / IP_BIND_ADDRESS_NO_PORT from linux/in.h; .NET has no name for them.
    private const int SolIp = 0;
    private const int IpBindAddressNoPort = 24;

    private const int MaxHandshakeBytes = 8 * 1024;
    private const byte OpContinuation = 0x0;
    private const byte OpText = 0x1;
    private const byte OpBinary = 0x2;
    private const byte OpClose = 0x8;
    private const byte OpPing = 0x9;
    private const byte OpPong = 0xA;

    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly TaskCompletionSource _live = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Socket _socket;
    private Stream _stream = null!;
    private Action<ReadOnlyMemory<byte>>? _onFrame;
    private Action? _onReadEnd;
    private Task? _receiver;
    private int _bufferSize;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private long _lastSentMs;
    private int _closeStatus = -1;
    private int _closing;

    private BenchConnection(Socket socket, int bufferSize)
    {
        _socket = socket;
        _bufferSize = Math.Max(bufferSize, 256);
        _buffer = new byte[_bufferSize];
    }

    public int? CloseStatus => _closeStatus < 0 ? null : _closeStatus;

    /// <summary>The <c>heartbeat</c> of the server's welcome: the longest a client may stay silent.</summary>
    public int HeartbeatSeconds { get; private set; } = 30;

    /// <summary>Environment.TickCount64 of the last frame sent, so an idle client knows when a ping is due.</summary>
    public long LastSentMs => Volatile.Read(ref _lastSentMs);

    /// <summary>The socket has stopped receiving: closed by the server, failed, or aborted.</summary>
    public bool IsClosed => _receiver is { IsCompleted: true };

    /// <param name="bufferSize">Receive buffer; it grows for a bigger frame and shrinks back after it.</param>
    /// <param name="localAddress">Source address to bind the socket to, or null to let the kernel choose.</param>
    /// <param name="onReadEnd">Called after the frames of one socket read have been handed out, as a client answers a read.</param>
    public static async Task<BenchConnection> ConnectAsync(Uri uri, string token, Action<ReadOnlyMemory<byte>> onFrame, CancellationToken cancellationToken,
        int bufferSize = 256 * 1024, IPAddress? localAddress = null, TimeSpan? timeout = null, Action? onReadEnd = null)
    {
        var socket = new Socket(localAddress?.AddressFamily ?? AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (localAddress is null)
        {
            socket.DualMode = true;
        }

        var connection = new BenchConnection(socket, bufferSize) { _onFrame = onFrame, _onReadEnd = onReadEnd };
        var limit = timeout ?? DefaultConnectTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(limit);
        try
        {
            if (localAddress is not null)
            {
                if (OperatingSystem.IsLinux())
                {
                    // Leave the port to connect(), which picks it per (source, destination) as an unbound socket
                    // does; bind() alone would reserve a port on that address for every destination.
                    socket.SetRawSocketOption(SolIp, IpBindAddressNoPort, BitConverter.GetBytes(1));
                }

                socket.Bind(new IPEndPoint(localAddress, 0));
            }

            // An address literal connects straight; a name goes through the resolver.
            EndPoint remote = IPAddress.TryParse(uri.IdnHost, out var ip) ? new IPEndPoint(ip, uri.Port) : new DnsEndPoint(uri.IdnHost, uri.Port);
            await socket.ConnectAsync(remote, deadline.Token);
            Stream stream = new NetworkStream(socket, ownsSocket: true);
            if (uri.Scheme == "wss")
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = uri.IdnHost }, deadline.Token);
                stream = tls;
            }

            connection._stream = stream;
            await connection.UpgradeAsync(uri, deadline.Token);
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

    /// <summary>The opening handshake (RFC 6455 §4.1): a GET with a random key, answered by 101 and the key's hash.</summary>
    private async Task UpgradeAsync(Uri uri, CancellationToken cancellationToken)
    {
        Span<byte> nonce = stackalloc byte[16];
        RandomNumberGenerator.Fill(nonce);
        var key = Convert.ToBase64String(nonce);
        var request = Encoding.ASCII.GetBytes(
            $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
            $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n");
        await _stream.WriteAsync(request, cancellationToken);

        while (true)
        {
            var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
            if (read == 0)
            {
                throw new IOException("the server closed the connection during the WebSocket upgrade");
            }

            _end += read;
            var headerEnd = _buffer.AsSpan(0, _end).IndexOf("\r\n\r\n"u8);
            if (headerEnd >= 0)
            {
                CheckUpgradeResponse(Encoding.ASCII.GetString(_buffer, 0, headerEnd), key);
                _start = headerEnd + 4; // frames the server sent right behind its response stay in the buffer
                return;
            }

            if (_end == _buffer.Length)
            {
                if (_end >= MaxHandshakeBytes)
                {
                    throw new IOException("the server's upgrade response is too long");
                }

                Array.Resize(ref _buffer, _buffer.Length * 2);
            }
        }
    }

    private static void CheckUpgradeResponse(string head, string key)
    {
        var lines = head.Split("\r\n");
        var status = lines[0].Split(' ', 3);
        if (status.Length < 2 || status[1] != "101")
        {
            throw new IOException($"WebSocket upgrade refused: {lines[0]}");
        }

        var expected = Protocol.WebSocketAccept.For(key);
        var accept = lines.Skip(1).Select(l => l.Split(':', 2)).FirstOrDefault(p => p.Length == 2 && p[0].Trim().Equals("Sec-WebSocket-Accept", StringComparison.OrdinalIgnoreCase));
        if (accept is null || accept[1].Trim() != expected)
        {
            throw new IOException("WebSocket upgrade answered without the right Sec-WebSocket-Accept");
        }
    }

    /// <summary>Sends one text frame.</summary>
    public ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken) => SendFrameAsync(OpText, frame, cancellationToken);

    private async ValueTask SendFrameAsync(byte opcode, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var length = payload.Length;
        var header = length < 126 ? 2 : length <= ushort.MaxValue ? 4 : 10;
        var total = header + 4 + length;
        var bytes = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            bytes[0] = (byte)(0x80 | opcode);
            switch (header)
            {
                case 2:
                    bytes[1] = (byte)(0x80 | length);
                    break;
                case 4:
                    bytes[1] = 0x80 | 126;
                    BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)length);
                    break;
                default:
                    bytes[1] = 0x80 | 127;
                    BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(2), (ulong)length);
                    break;
            }

            // Clients mask every frame (§5.3); the key only has to be unpredictable to scripts in a browser, so
            // the shared random generator is enough.
            var mask = (uint)Random.Shared.Next() ^ ((uint)Random.Shared.Next() << 1);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(header), mask);
            Mask(payload.Span, bytes.AsSpan(header + 4, length), mask);

            await _sendLock.WaitAsync(cancellationToken);
            try
            {
                Volatile.Write(ref _lastSentMs, Environment.TickCount64);
                await _stream.WriteAsync(bytes.AsMemory(0, total), cancellationToken);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            throw new IOException($"send failed: {ex.Message}", ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>XORs the payload with the 4-byte key (in wire order), eight bytes at a time.</summary>
    private static void Mask(ReadOnlySpan<byte> source, Span<byte> destination, uint mask)
    {
        var wide = ((ulong)mask << 32) | mask;
        var i = 0;
        for (; i + 8 <= source.Length; i += 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination[i..], BinaryPrimitives.ReadUInt64LittleEndian(source[i..]) ^ wide);
        }

        for (; i < source.Length; i++)
        {
            destination[i] = (byte)(source[i] ^ (byte)(mask >> (8 * (i & 3))));
        }
    }

    /// <summary>Drops the socket without a close handshake, as a client losing its network does.</summary>
    public void Abort()
    {
        Interlocked.Exchange(ref _closing, 1);
        _socket.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        byte[]? message = null; // a fragmented message being put together; the server sends whole ones
        var messageLength = 0;
        try
        {
            while (true)
            {
                // Hand out every whole frame in the buffer, in place.
                while (TryParseFrame(out var fin, out var opcode, out var payloadStart, out var payloadLength))
                {
                    var payload = _buffer.AsMemory(payloadStart, payloadLength);
                    _start = payloadStart + payloadLength;
                    switch (opcode)
                    {
                        case OpText or OpBinary or OpContinuation when fin && message is null:
                            Deliver(payload);
                            break;
                        case OpText or OpBinary or OpContinuation:
                            message ??= new byte[Math.Max(payloadLength * 2, 4096)];
                            if (messageLength + payloadLength > message.Length)
                            {
                                Array.Resize(ref message, Math.Max(message.Length * 2, messageLength + payloadLength));
                            }

                            payload.CopyTo(message.AsMemory(messageLength));
                            messageLength += payloadLength;
                            if (fin)
                            {
                                Deliver(message.AsMemory(0, messageLength));
                                message = null;
                                messageLength = 0;
                            }

                            break;
                        case OpPing:
                            await SendFrameAsync(OpPong, payload.ToArray(), CancellationToken.None);
                            break;
                        case OpClose:
                            _closeStatus = payloadLength >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(payload.Span) : 1005;
                            var reason = payloadLength > 2 ? Encoding.UTF8.GetString(payload.Span[2..]) : "";
                            _live.TrySetException(new InvalidOperationException($"closed by server: {_closeStatus} {reason}"));
                            if (Interlocked.Exchange(ref _closing, 1) == 0)
                            {
                                await ReplyCloseAsync(payload);
                            }

                            return;
                        case OpPong:
                            break;
                        default:
                            throw new IOException($"unknown WebSocket opcode {opcode}");
                    }
                }

                if (_live.Task.IsCompletedSuccessfully)
                {
                    _onReadEnd?.Invoke();
                }

                Compact();
                var read = await _stream.ReadAsync(_buffer.AsMemory(_end), CancellationToken.None);
                if (read == 0)
                {
                    _live.TrySetException(new IOException("the server closed the connection"));
                    return;
                }

                _end += read;
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            _live.TrySetException(ex);
        }
    }

    private void Deliver(ReadOnlyMemory<byte> frame)
    {
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
            Console.Error.WriteLine($"bad frame from server: {ex.Message}");
        }
    }

    /// <summary>Reads the frame header at the buffer's start; false until the whole frame is in the buffer.</summary>
    private bool TryParseFrame(out bool fin, out byte opcode, out int payloadStart, out int payloadLength)
    {
        fin = false;
        opcode = 0;
        payloadStart = 0;
        payloadLength = 0;
        var available = _buffer.AsSpan(_start, _end - _start);
        if (available.Length < 2)
        {
            return false;
        }

        fin = (available[0] & 0x80) != 0;
        opcode = (byte)(available[0] & 0x0F);
        var masked = (available[1] & 0x80) != 0;
        long length = available[1] & 0x7F;
        var header = 2;
        if (length == 126)
        {
            if (available.Length < 4)
            {
                return false;
            }

            length = BinaryPrimitives.ReadUInt16BigEndian(available[2..]);
            header = 4;
        }
        else if (length == 127)
        {
            if (available.Length < 10)
            {
                return false;
            }

            var wide = BinaryPrimitives.ReadUInt64BigEndian(available[2..]);
            length = wide > long.MaxValue ? long.MaxValue : (long)wide; // refused below as too big
            header = 10;
        }

        if (masked)
        {
            throw new IOException("the server sent a masked frame"); // §5.1: a client must fail the connection
        }

        if (length > 64 * 1024 * 1024)
        {
            throw new IOException($"a {length}-byte frame is more than a load generator takes");
        }

        if (available.Length < header + length)
        {
            EnsureRoom(header + (int)length);
            return false;
        }

        payloadStart = _start + header;
        payloadLength = (int)length;
        return true;
    }

    /// <summary>Makes the buffer big enough for a frame of <paramref name="frameBytes"/> at its start.</summary>
    private void EnsureRoom(int frameBytes)
    {
        if (frameBytes > _buffer.Length)
        {
            var bigger = new byte[Math.Max(frameBytes, _buffer.Length * 2)];
            _buffer.AsSpan(_start, _end - _start).CopyTo(bigger);
            _end -= _start;
            _start = 0;
            _buffer = bigger;
        }
    }

    /// <summary>Moves a partial frame to the buffer's start, and gives back a grown buffer once it is empty.</summary>
    private void Compact()
    {
        if (_start == _end)
        {
            _start = _end = 0;
            if (_buffer.Length > _bufferSize)
            {
                _buffer = new byte[_bufferSize];
            }
        }
        else if (_start > 0 && (_end == _buffer.Length || _start > _buffer.Length / 2))
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
    }

    private async Task ReplyCloseAsync(ReadOnlyMemory<byte> payload)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await SendFrameAsync(OpClose, payload.Length >= 2 ? payload[..2].ToArray() : ReadOnlyMemory<byte>.Empty, timeout.Token);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
        }
    }

    /// <summary>The <c>t</c> of a frame, read without building a document.</summary>
    public static string? FrameType(ReadOnlySpan<byte> json) => Protocol.FrameFields.Type(json);

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
        if (_receiver is { IsCompleted: false } && Interlocked.Exchange(ref _closing, 1) == 0)
        {
            // Close handshake (§7.1.2): say 1000, then wait a moment for the server's close and its FIN.
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await SendFrameAsync(OpClose, new byte[] { 0x03, 0xE8 }, timeout.Token);
                await _receiver.WaitAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or TimeoutException)
            {
            }
        }

        if (_stream is not null)
        {
            await _stream.DisposeAsync();
        }

        _socket.Dispose();
        if (_receiver is not null)
        {
            await _receiver;
        }

        _sendLock.Dispose();
    }
}
