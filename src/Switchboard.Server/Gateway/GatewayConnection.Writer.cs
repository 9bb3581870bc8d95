using System.Diagnostics;
using System.Net.WebSockets;
using Switchboard.Protocol;

namespace Switchboard.Server.Gateway;

internal sealed partial class GatewayConnection
{
    private TaskCompletionSource? _drained;

    public void Send(byte[] frame) => Enqueue(new Outbound(frame, 0));

    private void Enqueue(Outbound frame)
    {
        if (Volatile.Read(ref _closeCode) != 0)
        {
            return;
        }

        if (Interlocked.Add(ref _queuedBytes, frame.Bytes.Length) > _options.OutboundQueueBytes)
        {
            // The client is not reading: drop it rather than grow. It reconnects and recovers from the store.
            _services.Metrics.SlowClosed.Inc();
            Close(CloseCodes.TooSlow, "too slow: outbound queue full");
            return;
        }

        if (!_outbound.Writer.TryWrite(frame))
        {
            Interlocked.Add(ref _queuedBytes, -frame.Bytes.Length);
        }
    }

    /// <summary>The only sender on the socket: drains several frames per wake-up, then sends the close, if any.</summary>
    private async Task WriteLoopAsync()
    {
        var reader = _outbound.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_abort.Token))
            {
                while ((Volatile.Read(ref _closeCode) == 0 || _flushBeforeClose) && reader.TryRead(out var frame))
                {
                    await _socket.SendAsync(frame.Bytes, WebSocketMessageType.Text, true, _abort.Token);
                    Interlocked.Add(ref _queuedBytes, -frame.Bytes.Length);
                    if (frame.ReceivedAt != 0)
                    {
                        _services.Metrics.DeliveryLatency.Observe(Stopwatch.GetElapsedTime(frame.ReceivedAt).TotalSeconds);
                    }
                }

                Interlocked.Exchange(ref _drained, null)?.TrySetResult();
                if (Volatile.Read(ref _closeCode) != 0 && !_flushBeforeClose)
                {
                    break;
                }
            }

            var code = Volatile.Read(ref _closeCode);
            if (code != 0 && _socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await _socket.CloseOutputAsync((WebSocketCloseStatus)code, _closeReason, _abort.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            Interlocked.Exchange(ref _drained, null)?.TrySetResult();
        }
    }

    /// <summary>Waits until the queue is below half its budget, so replay never buffers the backlog whole.</summary>
    private async ValueTask WaitForRoomCoreAsync()
    {
        while (Volatile.Read(ref _queuedBytes) > _options.OutboundQueueBytes / 2 && Volatile.Read(ref _closeCode) == 0)
        {
            var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var current = Interlocked.CompareExchange(ref _drained, drained, null) ?? drained;
            try
            {
                await Task.WhenAny(current.Task, Task.Delay(100, _abort.Token));
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }
}
