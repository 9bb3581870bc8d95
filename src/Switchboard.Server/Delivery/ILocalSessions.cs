namespace Switchboard.Server.Delivery;

/// <summary>A device socket on this node, as in-process delivery sees it. Implemented by the gateway.</summary>
internal interface IDeviceSession
{
    string User { get; }
    int Device { get; }

    /// <summary>Unique per connection on this node.</summary>
    long ConnectionId { get; }

    /// <summary>When its last frame arrived (Environment.TickCount64 ms): a socket silent past the heartbeat may be dead.</summary>
    long LastTraffic { get; }

    /// <summary>Queues a serialised frame; never waits on the network.</summary>
    void Send(byte[] frame);

    /// <summary>
    /// Queues a stored event. While the socket is still replaying, the event is left to the replay (which reads
    /// the store) so that per-conversation order holds. With <paramref name="inline"/> the calling thread may
    /// write to the socket itself (fanout workers); otherwise the write is handed to the thread pool.
    /// </summary>
    void SendEvent(string conv, long seq, byte[] frame, long receivedAt, bool inline);

    /// <summary>Completes when the outbound queue is below half its budget.</summary>
    ValueTask WaitForRoomAsync();

    /// <summary>Closes the socket with a WebSocket close code; never waits.</summary>
    void Close(int code, string reason);
}

/// <summary>The sockets this node holds, by user. The gateway registers them; in-process delivery reads them.</summary>
internal interface ILocalSessions
{
    /// <summary>The user's sessions on this node; empty when none. An array: delivery loops over it without an enumerator.</summary>
    IDeviceSession[] Sessions(string user);

    /// <summary>Until disposed, sockets given frames on this thread are written at the end, on this thread.</summary>
    IDisposable BeginDrainBatch();
}
