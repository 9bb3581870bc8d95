using System.Buffers;
using System.Net.Sockets;

namespace Switchboard.Server.Gateway;

/// <summary>
/// The stream under a gateway socket's WebSocket: reads and writes in batches, and holds no buffer while idle.
/// </summary>
/// <remarks>
/// A plain <see cref="NetworkStream"/> would cost a system call per WebSocket header and per payload on the way
/// in (the framing reads a header of a few bytes, then the payload), and one per frame on the way out; under load
/// that cost a fifth to a quarter of the throughput. So:
/// <list type="bullet">
/// <item>A small read fills a pooled 4 KiB chunk with one receive and is served from it until it is drained, then
/// the chunk goes back to the pool. A zero-byte read waits for data without a buffer.</item>
/// <item>Writes collect in a pooled buffer while the socket's writer has it corked (it corks for each drain of its
/// queue and uncorks at the end), and while a send is in progress; one sender at a time sends what has collected,
/// so a burst of acks or deliveries leaves in one send, as with Kestrel's pipe, without a thread hop. What may
/// collect is bounded: a write behind a slow send waits. The WebSocket above writes one whole frame at a time, so
/// the collected bytes are whole frames in order.</item>
/// </list>
/// </remarks>
internal sealed class GatewaySocketStream : Stream
{
    private readonly Socket _socket;

    /// <param name="socket">A non-blocking socket (<see cref="Socket.Blocking"/> false).</param>
    /// <param name="received">Bytes already read from the socket (past the request head), served before the socket's.</param>
    public GatewaySocketStream(Socket socket, byte[] received)
    {
        _socket = socket;
        if (received.Length > 0)
        {
            _read = received;
            _readStart = 0;
            _readEnd = received.Length;
            _readNotPooled = true;
        }
    }

    private const int ReadChunkBytes = 4096;
    private const int FirstWriteBufferBytes = 16 * 1024;

    /// <summary>Collected bytes beyond which a corked write starts sending, and a write behind a slow send waits.</summary>
    private const int MaxCollectedBytes = 64 * 1024;

    private readonly Lock _gate = new();
    private bool _sending;
    private TaskCompletionSource? _room;

    private byte[]? _read;
    private int _readStart;
    private int _readEnd;
    private bool _readNotPooled;
    private byte[]? _write;
    private int _written;
    private bool _corked;
    private int _disposed;

    /// <summary>From now on writes collect instead of going out; <see cref="UncorkAsync"/> sends them.</summary>
    public void Cork()
    {
        lock (_gate)
        {
            _corked = true;
        }
    }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_read is { } chunk)
        {
            var n = Math.Min(buffer.Length, _readEnd - _readStart);
            chunk.AsSpan(_readStart, n).CopyTo(buffer.Span);
            _readStart += n;
            if (_readStart == _readEnd)
            {
                _read = null;
                if (_readNotPooled)
                {
                    _readNotPooled = false;
                }
                else
                {
                    ArrayPool<byte>.Shared.Return(chunk);
                }
            }

            return ValueTask.FromResult(n); // 0 for a zero-byte read: data is there
        }

        // A zero-byte read waits for data holding nothing; a big read goes straight into the caller's buffer.
        return buffer.Length == 0 || buffer.Length >= ReadChunkBytes
            ? _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken)
            : ReadChunkAsync(buffer, cancellationToken);
    }

    private async ValueTask<int> ReadChunkAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var chunk = ArrayPool<byte>.Shared.Rent(ReadChunkBytes);
        int received;
        try
        {
            received = await _socket.ReceiveAsync(chunk.AsMemory(0, ReadChunkBytes), SocketFlags.None, cancellationToken);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(chunk);
            throw;
        }

        var n = Math.Min(received, buffer.Length);
        chunk.AsSpan(0, n).CopyTo(buffer.Span);
        if (n < received)
        {
            _read = chunk;
            _readStart = n;
            _readEnd = received;
        }
        else
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        return n;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var flush = false;
        lock (_gate)
        {
            if (!_sending && !_corked && _write is null)
            {
                _sending = true; // nothing collected and nobody sending: this write goes straight out
            }
            else if (_written + buffer.Length <= MaxCollectedBytes || !_sending)
            {
                Append(buffer.Span);
                if (_sending || (_corked && _written < MaxCollectedBytes))
                {
                    return ValueTask.CompletedTask; // the send in progress, or the uncork, takes it
                }

                _sending = true;
                flush = true;
            }
            else
            {
                return WriteWhenRoomAsync(buffer, cancellationToken); // a slow socket: wait, memory stays bounded
            }
        }

        return flush ? SendCollectedAsync(cancellationToken) : SendThenCollectedAsync(buffer, cancellationToken);
    }

    /// <summary>Stops collecting and sends what was collected (unless a send in progress takes it anyway).</summary>
    public ValueTask UncorkAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            _corked = false;
            if (_sending || _write is null)
            {
                return ValueTask.CompletedTask;
            }

            _sending = true;
        }

        return SendCollectedAsync(cancellationToken);
    }

    private async ValueTask WriteWhenRoomAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        Task room;
        lock (_gate)
        {
            room = (_room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        await room.WaitAsync(cancellationToken);
        await WriteAsync(buffer, cancellationToken);
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (_write is null || _written + bytes.Length > _write.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(FirstWriteBufferBytes, (_written + bytes.Length) * 2));
            if (_write is not null)
            {
                _write.AsSpan(0, _written).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(_write);
            }

            _write = bigger;
        }

        bytes.CopyTo(_write.AsSpan(_written));
        _written += bytes.Length;
    }

    private async ValueTask SendThenCollectedAsync(ReadOnlyMemory<byte> first, CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync(first, cancellationToken);
        }
        catch
        {
            StopSending();
            throw;
        }

        await SendCollectedAsync(cancellationToken);
    }

    /// <summary>The one sender: sends what was collected, and what was collected meanwhile, until none is left.</summary>
    private async ValueTask SendCollectedAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            byte[] bytes;
            int count;
            lock (_gate)
            {
                if (_write is null)
                {
                    _sending = false;
                    ReleaseRoom();
                    return;
                }

                bytes = _write;
                count = _written;
                _write = null;
                _written = 0;
                ReleaseRoom();
            }

            try
            {
                await SendAsync(bytes.AsMemory(0, count), cancellationToken);
            }
            catch
            {
                StopSending();
                throw;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(bytes);
            }
        }
    }

    private void StopSending()
    {
        lock (_gate)
        {
            _sending = false;
            ReleaseRoom();
        }
    }

    private void ReleaseRoom()
    {
        _room?.TrySetResult();
        _room = null;
    }

    private ValueTask SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken) => SendAllAsync(_socket, bytes, cancellationToken);

    /// <summary>
    /// Sends all of <paramref name="bytes"/> on a non-blocking socket: straight away with a plain send call while the
    /// kernel takes them (almost always), and asynchronously only for what it cannot take now. An asynchronous send
    /// makes the socket keep an operation object of about 300 bytes for the rest of its life; most sockets never
    /// need one.
    /// </summary>
    public static ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        var sent = 0;
        while (sent < bytes.Length)
        {
            var n = socket.Send(bytes.Span[sent..], SocketFlags.None, out var error);
            if (error == SocketError.Success)
            {
                sent += n;
            }
            else if (error == SocketError.WouldBlock)
            {
                return SendFromAsync(socket, bytes, sent, cancellationToken);
            }
            else
            {
                return ValueTask.FromException(new IOException($"send failed: {error}", new SocketException((int)error)));
            }
        }

        return ValueTask.CompletedTask;
    }

    private static async ValueTask SendFromAsync(Socket socket, ReadOnlyMemory<byte> bytes, int sent, CancellationToken cancellationToken)
    {
        while (sent < bytes.Length)
        {
            sent += await socket.SendAsync(bytes[sent..], SocketFlags.None, cancellationToken);
        }
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask; // writes are sent by the writer or the uncork

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // Buffers still held are left to the collector, not the pool: an operation on another thread may be
            // copying into one right now.
            _socket.Dispose();
        }

        base.Dispose(disposing);
    }
}
