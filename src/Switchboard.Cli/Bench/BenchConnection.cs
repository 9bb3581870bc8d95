using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Switchboard.Cli.Bench;

/// <summary>
/// A lean protocol connection for load generation: no outbox, no dedup, just frames. Sends are serialised by a
/// lock (one sender per socket); frames are handed to a callback as raw UTF-8, so the caller parses only what it
/// needs.
/// </summary>
internal sealed class BenchConnection : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly TaskCompletionSource _live = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Action<ReadOnlyMemory<byte>>? _onFrame;
    private Task? _receiver;

    public int? CloseStatus => (int?)_socket.CloseStatus;

    private int _bufferSize = 256 * 1024;

    public static async Task<BenchConnection> ConnectAsync(Uri uri, string token, Action<ReadOnlyMemory<byte>> onFrame, CancellationToken cancellationToken, int bufferSize = 256 * 1024)
    {
        var connection = new BenchConnection { _onFrame = onFrame, _bufferSize = bufferSize };
        connection._socket.Options.KeepAliveInterval = TimeSpan.Zero;
        await connection._socket.ConnectAsync(uri, cancellationToken);
        connection._receiver = connection.ReceiveLoopAsync();
        await connection.SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"hello\",\"v\":1,\"token\":\"{token}\"}}"), cancellationToken);
        await connection._live.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        return connection;
    }

    public async ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken);
        try
        {
            await _socket.SendAsync(frame, WebSocketMessageType.Text, true, cancellationToken);
        }
        finally
        {
            _sendLock.Release();
        }
    }

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
                if (!_live.Task.IsCompleted && FrameType(frame.Span) == "live")
                {
                    _live.TrySetResult();
                    continue;
                }

                try
                {
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
    public static string? StringField(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return null;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var match = reader.ValueTextEquals(name);
            reader.Read();
            if (match)
            {
                return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
            }

            reader.Skip();
        }

        return null;
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
