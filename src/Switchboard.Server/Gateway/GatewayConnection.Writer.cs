using System.Diagnostics;
using System.Net.WebSockets;
using Switchboard.Protocol;

namespace Switchboard.Server.Gateway;

/// <summary>
/// The socket's one sender. Frames wait in a byte-bounded queue; whoever holds the <c>_writing</c> token drains
/// it onto the socket, several frames per turn, and sends the close frame when one was asked for. A fanout
/// worker drains inline on its own thread (no hop per socket); everyone else hands the drain to the thread pool,
/// so the group-commit writer never waits on a socket.
/// </summary>
internal sealed partial class GatewayConnection
{
    /// <summary>Completed once the close frame is sent (or cannot be); made at close, so an open socket holds none.</summary>
    private TaskCompletionSource CloseSent => LazyInitializer.EnsureInitialized(ref _closeSent, static () => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    private TaskCompletionSource? _closeSent;
    private TaskCompletionSource? _drained;
    private int _writing;
    private volatile bool _closeDone;

    public void Send(byte[] frame) => Enqueue(new Outbound(frame, 0), inline: false);

    private void Enqueue(Outbound frame, bool inline)
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

        lock (_lock)
        {
            (_queue ??= OutboundQueues.Rent()).Enqueue(frame);
        }

        Kick(inline);
    }

    /// <summary>
    /// Makes sure someone drains the queue: this thread if <paramref name="inline"/>, the end of this thread's
    /// drain batch if one is open (<see cref="DeferDrains"/>), else the pool.
    /// </summary>
    private void Kick(bool inline)
    {
        if (Volatile.Read(ref _writing) != 0)
        {
            return; // the holder re-checks the queue after letting go of the token
        }

        if (inline)
        {
            Pump();
        }
        else if (_deferred is { } batch)
        {
            batch.Add(this);
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    /// <summary>A drain on the thread pool: the connection is its own work item, so queuing one allocates nothing.</summary>
    void IThreadPoolWorkItem.Execute() => Pump();

    [ThreadStatic]
    private static DrainBatch? _deferred;

    [ThreadStatic]
    private static DrainBatch? _spareBatch;

    /// <summary>
    /// Until disposed, sockets given frames on this thread are drained once each at the end, by the thread pool: a
    /// commit's ack, message and receipt for one socket leave in one write and cost one hop, and the sends (on
    /// loopback the receiver's TCP work runs in the sender's call) are spread over the pool's threads instead of
    /// holding up the thread that commits.
    /// </summary>
    public static IDisposable DeferDrains()
    {
        if (_deferred is not null)
        {
            return NoBatch.Instance;
        }

        _deferred = _spareBatch ?? new DrainBatch();
        _spareBatch = null;
        return _deferred;
    }

    private sealed class DrainBatch : IDisposable
    {
        private const int DrainGroup = 32;

        private readonly List<GatewayConnection> _connections = [];
        private readonly HashSet<GatewayConnection> _seen = [];

        public void Add(GatewayConnection connection)
        {
            if (_seen.Add(connection))
            {
                _connections.Add(connection);
            }
        }

        public void Dispose()
        {
            _deferred = null;
            // Sockets are drained in groups, one thread-pool item per group: a commit that touches a thousand
            // sockets costs a few dozen hops, not a thousand, and the groups still spread over the pool's threads.
            for (var from = 0; from < _connections.Count; from += DrainGroup)
            {
                var group = _connections.GetRange(from, Math.Min(DrainGroup, _connections.Count - from));
                ThreadPool.UnsafeQueueUserWorkItem(static g =>
                {
                    foreach (var connection in g)
                    {
                        connection.Pump();
                    }
                }, group, preferLocal: false);
            }

            _connections.Clear();
            _seen.Clear();
            _spareBatch = this; // the next batch on this thread reuses the lists
        }
    }

    /// <summary>
    /// Outbound queues shared by all connections: a socket takes one with its first frame and gives it back once
    /// drained, so an idle socket holds none and a busy one does not make a new one per burst.
    /// </summary>
    private static class OutboundQueues
    {
        private const int Keep = 1024; // enough for the sockets that are busy at one moment
        private static readonly System.Collections.Concurrent.ConcurrentQueue<Queue<Outbound>> Idle = new();
        private static int _idleCount;

        public static Queue<Outbound> Rent()
        {
            if (Idle.TryDequeue(out var queue))
            {
                Interlocked.Decrement(ref _idleCount);
                return queue;
            }

            return new Queue<Outbound>(4);
        }

        public static void Return(Queue<Outbound> queue)
        {
            if (queue.Count != 0 || queue.EnsureCapacity(0) > 64)
            {
                return; // one that grew behind a slow reader is left to the collector rather than kept large
            }

            if (Interlocked.Increment(ref _idleCount) <= Keep)
            {
                Idle.Enqueue(queue);
            }
            else
            {
                Interlocked.Decrement(ref _idleCount);
            }
        }
    }

    private sealed class NoBatch : IDisposable
    {
        public static readonly NoBatch Instance = new();

        public void Dispose()
        {
        }
    }

    private void Pump()
    {
        while (HasWork() && Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
        {
            var drain = DrainAsync();
            if (!drain.IsCompleted)
            {
                return; // its continuation pumps again when it is done
            }
        }
    }

    private bool HasWork() => Volatile.Read(ref _closeCode) != 0 ? !_closeDone : HasQueued();

    private bool HasQueued()
    {
        lock (_lock)
        {
            return _queue is { Count: > 0 };
        }
    }

    private bool TryDequeue(out Outbound frame)
    {
        lock (_lock)
        {
            if (_queue is { Count: > 0 } queue)
            {
                frame = queue.Dequeue();
                if (queue.Count == 0)
                {
                    _queue = null;
                    OutboundQueues.Return(queue);
                }

                return true;
            }
        }

        frame = default;
        return false;
    }

    private async Task DrainAsync()
    {
        var wentAsync = false;
        try
        {
            // On a socket the gateway owns, the frames of this drain collect in the stream and leave in as few
            // sends as the socket takes them (one, usually), as Kestrel's pipe would batch them.
            _stream?.Cork();
            while ((Volatile.Read(ref _closeCode) == 0 || _flushBeforeClose) && TryDequeue(out var frame))
            {
                // No token: a send that must wait would register on it and leave a spent node behind for the
                // socket's life; cancelling _abort aborts the socket, which fails a stuck send just the same.
                var send = _socket.SendAsync(frame.Bytes, WebSocketMessageType.Text, true, CancellationToken.None);
                if (send.IsCompleted)
                {
                    send.GetAwaiter().GetResult(); // throws here if it failed synchronously
                }
                else
                {
                    wentAsync = true;
                    await send;
                }

                Interlocked.Add(ref _queuedBytes, -frame.Bytes.Length);
                if (frame.ReceivedAt != 0)
                {
                    _services.Metrics.DeliveryLatency.Observe(Stopwatch.GetElapsedTime(frame.ReceivedAt).TotalSeconds);
                }
            }

            if (_stream is not null)
            {
                var uncork = _stream.UncorkAsync();
                if (uncork.IsCompleted)
                {
                    uncork.GetAwaiter().GetResult();
                }
                else
                {
                    wentAsync = true;
                    await uncork;
                }
            }

            Interlocked.Exchange(ref _drained, null)?.TrySetResult();
            var code = Volatile.Read(ref _closeCode);
            if (code != 0 && !_closeDone && (!_flushBeforeClose || !HasQueued()))
            {
                _closeDone = true;
                if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
                {
                    wentAsync = true;
                    await _socket.CloseOutputAsync((WebSocketCloseStatus)code, _closeReason, _abort.Token);
                }

                CloseSent.TrySetResult();
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The socket is gone: nothing more can be sent. What was queued is recovered from the store.
            Close(CloseCodes.InternalError, "send failed");
            _closeDone = true;
            CloseSent.TrySetResult();
            Interlocked.Exchange(ref _drained, null)?.TrySetResult();
        }
        finally
        {
            // A full fence: the release must not be reordered after HasWork's reads, or a close or frame that
            // arrives right now could be missed by both sides.
            Interlocked.Exchange(ref _writing, 0);
        }

        if (wentAsync)
        {
            Pump();
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
