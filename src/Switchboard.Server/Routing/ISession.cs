namespace Switchboard.Server.Routing;

/// <summary>An authenticated device socket on this node, as the rest of the server sees it.</summary>
internal interface ISession
{
    string User { get; }
    int Device { get; }

    /// <summary>Queues a serialised frame; never waits on the network.</summary>
    void Send(byte[] frame);

    /// <summary>
    /// Queues a stored event. While the socket is still replaying, the event is left to the replay (which reads
    /// the store) so that per-conversation order holds. With <paramref name="inline"/> the calling thread may
    /// write to the socket itself (fanout workers); otherwise the write is handed to the thread pool.
    /// </summary>
    void SendEvent(string conv, long seq, byte[] frame, long receivedAt, bool inline);

    /// <summary>Closes the socket with a WebSocket close code.</summary>
    void Close(int code, string reason);
}

/// <summary>Where each user's online devices are: user → sessions.</summary>
internal interface ISessionRouter
{
    /// <summary>
    /// Adds a session; returns the session it replaces (same user and device), if any, and whether the user had
    /// no session before (their first device came online).
    /// </summary>
    (ISession? Replaced, bool First) Register(ISession session);

    /// <summary>Removes a session; true when it was the user's last one on this node.</summary>
    bool Unregister(ISession session);

    /// <summary>The user's online sessions; an empty list when none.</summary>
    IReadOnlyList<ISession> Sessions(string user);

    ISession? Find(string user, int device);

    /// <summary>A snapshot of every session, for sweeps (heartbeats, draining).</summary>
    IReadOnlyList<ISession> All();

    int Count { get; }
}
