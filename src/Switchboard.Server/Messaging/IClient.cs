using Switchboard.Server.Routing;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>A connected, authenticated device as the message path sees it.</summary>
internal interface IClient : Routing.ISession, ICommandOrigin
{
    new string User { get; }
    new int Device { get; }
    ClientState State { get; }

    /// <summary>Waits until the socket's outbound queue has room, so a large answer streams instead of piling up.</summary>
    ValueTask WaitForRoomAsync();
}

/// <summary>Per-socket message-path state, small and bounded.</summary>
internal sealed class ClientState(RateGate rate, int maxInFlight)
{
    public RateGate Rate { get; } = rate;

    /// <summary>
    /// Writes this socket has queued and not yet seen committed. A socket at the limit is simply not read until
    /// one commits, so one pipelining client can neither fill the writer's queue nor grow memory.
    /// </summary>
    /// <remarks>Made on the first write: an idle socket holds none.</remarks>
    public SemaphoreSlim InFlight => LazyInitializer.EnsureInitialized(ref _inFlight, () => new SemaphoreSlim(maxInFlight, maxInFlight));

    private SemaphoreSlim? _inFlight;

    /// <summary>Last forwarded typing frame per (conv, on), for the once-per-second throttle (made on first use: most sockets idle).</summary>
    public Dictionary<(string Conv, bool On), long> TypingForwarded => _typing ??= [];

    /// <summary>The users this socket watches (its open chats).</summary>
    public IReadOnlySet<string> Watching { get; set; } = EmptySet;

    private static readonly HashSet<string> EmptySet = [];
    private Dictionary<(string Conv, bool On), long>? _typing;
}
