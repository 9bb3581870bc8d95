namespace Switchboard.Server.Gateway;

/// <summary>Settings of the WebSocket gateway, bound from <c>Switchboard:Gateway</c>.</summary>
public sealed class GatewayOptions
{
    /// <summary>
    /// Socket completions run on the socket event threads (one per core) instead of waking a thread-pool thread for
    /// every read: a context switch per frame saved, which measured 5-7 % of the CPU at 15,000 messages/s over a
    /// thousand sockets. Work that reads the store in bulk (replay, sync, watch) moves itself to the pool.
    /// Takes effect for the first server in a process. Default: on, but off in cluster mode (where the store, Redis and
    /// NATS are sockets as well, handled by the same event threads).
    /// </summary>
    public bool InlineSocketCompletions { get; set; } = true;

    /// <summary>Seconds a new socket has to send its hello before it is closed with 1008.</summary>
    public int HelloTimeoutSeconds { get; set; } = 10;

    /// <summary>
    /// Seconds between client heartbeats, announced in welcome. A socket silent for three of them is closed
    /// (one lost ping plus slack); presence lasts two of them.
    /// </summary>
    public int HeartbeatSeconds { get; set; } = 30;

    /// <summary>Largest inbound frame; a bigger one closes the socket with 1009.</summary>
    public int MaxFrameBytes { get; set; } = Protocol.Limits.DefaultMaxFrameBytes;

    /// <summary>
    /// Bytes a socket may have queued for sending. A client that falls this far behind is closed with 4002 and
    /// recovers from the store on reconnect, so one slow reader never grows server memory.
    /// </summary>
    public int OutboundQueueBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Sends and cursor moves a socket may have waiting for the group commit. Enough for deep pipelining (the
    /// bench's window of 256); beyond it the socket is not read until something commits.
    /// </summary>
    public int MaxInFlightPerSocket { get; set; } = 256;

    /// <summary>
    /// Pending TCP connections the kernel queues for accept. Kestrel's 512 overflows when thousands of clients
    /// reconnect at once (a restart, a network blip), and each dropped handshake costs its client a second of
    /// kernel retry; the kernel caps it at net.core.somaxconn (4,096 here).
    /// </summary>
    public int ListenBacklog { get; set; } = 4096;

    /// <summary>
    /// Serve <c>GET /v1/ws</c> on the socket itself rather than as a Kestrel HTTP request: a few KB per idle socket
    /// instead of about 15, and frames sent without a pipe or a thread hop (see <c>GatewayTransportFactory</c>).
    /// False leaves every connection to Kestrel; the protocol is the same either way.
    /// </summary>
    public bool OwnSockets { get; set; } = true;

    /// <summary>Largest first frame (the hello); a bigger one closes the socket with 1009. A hello is well under 1 KiB.</summary>
    public int MaxHelloBytes { get; set; } = 4096;

    /// <summary>
    /// Connections accepted that have not sent an accepted hello yet, in all. Past it new connections are closed
    /// at once: a flood of sockets that never authenticate holds bounded memory.
    /// </summary>
    public int MaxUnauthenticated { get; set; } = 10_000;

    /// <summary>The same bound per client address (IPv6 per /64); not applied to trusted proxies.</summary>
    public int MaxUnauthenticatedPerAddress { get; set; } = 256;

    /// <summary>Events read from the store per replay page; replay waits for the socket to drain between pages.</summary>
    public int ReplayPageSize { get; set; } = 256;

    internal void Validate()
    {
        if (HelloTimeoutSeconds < 1 || HeartbeatSeconds < 1)
        {
            throw new InvalidOperationException("Switchboard:Gateway: HelloTimeoutSeconds and HeartbeatSeconds must be at least 1.");
        }

        if (MaxFrameBytes is < 1024 or > 16 * 1024 * 1024)
        {
            throw new InvalidOperationException("Switchboard:Gateway:MaxFrameBytes must be between 1 KiB and 16 MiB.");
        }

        if (OutboundQueueBytes < 64 * 1024)
        {
            throw new InvalidOperationException("Switchboard:Gateway:OutboundQueueBytes must be at least 64 KiB.");
        }

        if (MaxInFlightPerSocket is < 1 or > 100_000)
        {
            throw new InvalidOperationException("Switchboard:Gateway:MaxInFlightPerSocket must be between 1 and 100000.");
        }

        if (MaxHelloBytes < 256 || MaxHelloBytes > MaxFrameBytes || MaxUnauthenticated < 1 || MaxUnauthenticatedPerAddress < 1)
        {
            throw new InvalidOperationException("Switchboard:Gateway: MaxHelloBytes must be between 256 and MaxFrameBytes, MaxUnauthenticated and MaxUnauthenticatedPerAddress at least 1.");
        }

        if (ListenBacklog is < 1 or > 65_535)
        {
            throw new InvalidOperationException("Switchboard:Gateway:ListenBacklog must be between 1 and 65535.");
        }

        if (ReplayPageSize is < 1 or > 10_000)
        {
            throw new InvalidOperationException("Switchboard:Gateway:ReplayPageSize must be between 1 and 10000.");
        }
    }
}
