namespace Switchboard.Server.Messaging;

/// <summary>
/// A connected device as the message path sees it: who it is, which connection it is (answers go to that one and
/// not to a newer socket of the same device), and its message-path state. It holds no socket: everything sent to
/// the device goes through <see cref="Delivery.IDeliveryHub"/>.
/// </summary>
internal sealed class ConnectionContext(string user, int device, long connectionId, ClientState state) : ICommandOrigin
{
    public string User { get; } = user;
    public int Device { get; } = device;

    /// <summary>Unique per connection on this node, so an answer never reaches a socket that replaced this one.</summary>
    public long ConnectionId { get; } = connectionId;

    public ClientState State { get; } = state;

    /// <summary>Called by the sequencer when one of this connection's writes is done (committed or refused).</summary>
    public void WriteDone() => State.InFlight.Release();
}

/// <summary>Per-socket message-path state, small and bounded.</summary>
internal sealed class ClientState(RateGate rate, int maxInFlight)
{
    public RateGate Rate { get; } = rate;

    /// <summary>
    /// Writes this socket has queued and not yet seen committed. A socket at the limit is simply not read until
    /// one commits, so one pipelining client can neither fill the sequencer's queue nor grow memory.
    /// </summary>
    /// <remarks>Made on the first write: an idle socket holds none.</remarks>
    public SemaphoreSlim InFlight => Volatile.Read(ref _inFlight) ?? MakeInFlight();

    private SemaphoreSlim MakeInFlight()
    {
        var made = new SemaphoreSlim(maxInFlight, maxInFlight);
        return Interlocked.CompareExchange(ref _inFlight, made, null) ?? made;
    }

    private SemaphoreSlim? _inFlight;

    /// <summary>Last forwarded typing frame per (conv, on), for the once-per-second throttle (made on first use: most sockets idle).</summary>
    public Dictionary<(string Conv, bool On), long> TypingForwarded => _typing ??= [];

    /// <summary>The users this socket watches (its open chats).</summary>
    public IReadOnlySet<string> Watching { get; set; } = EmptySet;

    private static readonly HashSet<string> EmptySet = [];
    private Dictionary<(string Conv, bool On), long>? _typing;
}
