namespace Switchboard.Server.Messaging;

/// <summary>Settings of the message path, bound from <c>Switchboard:Messaging</c>.</summary>
public sealed class MessagingOptions
{
    /// <summary>Largest plain body in UTF-8 bytes (the protocol's 16 KiB).</summary>
    public int MaxBodyBytes { get; set; } = Protocol.Limits.MaxBodyBytes;

    /// <summary>
    /// Refuse a plaintext <c>body</c> in sends and edits with <c>forbidden</c>, so nothing readable is stored: only
    /// <c>e2ee</c> payloads. Off by default in this version, so the raw protocol and the curl examples work.
    /// </summary>
    public bool RequireE2ee { get; set; }

    /// <summary>Largest e2ee payload in UTF-8 bytes of its JSON.</summary>
    public int MaxE2eeBytes { get; set; } = 48 * 1024;

    /// <summary>Minutes after sending during which the author may edit.</summary>
    public int EditWindowMinutes { get; set; } = 15;

    /// <summary>Hours after sending during which the author may delete for everyone.</summary>
    public int DeleteWindowHours { get; set; } = 48;

    /// <summary>
    /// Sends a device may burst: far above the protocol's 256 so that clients, bots and benchmarks can pipeline
    /// without tuning, low enough that one runaway device cannot take the writer for itself for long.
    /// </summary>
    public int DeviceBurst { get; set; } = 10_000;

    /// <summary>Sends per second a device may sustain (a busy bot; people type far slower).</summary>
    public int DevicePerSecond { get; set; } = 2_000;

    /// <summary>Sends a user (all devices together) may burst.</summary>
    public int UserBurst { get; set; } = 20_000;

    /// <summary>Sends per second a user may sustain over all devices.</summary>
    public int UserPerSecond { get; set; } = 4_000;

    /// <summary>Typing frames forwarded at most once per this many milliseconds per device, conversation and state.</summary>
    public int TypingThrottleMs { get; set; } = 1000;

    /// <summary>
    /// Conversations whose last seq the sequencer keeps in memory (about 40 bytes each). A miss costs one store
    /// read; hot conversations stay, the long tail of rarely touched ones is read when it comes back.
    /// </summary>
    public int ConversationCacheEntries { get; set; } = 200_000;

    /// <summary>Device and member cursors the sequencer keeps in memory, each (about 40–60 bytes an entry).</summary>
    public int CursorCacheEntries { get; set; } = 200_000;

    /// <summary>Users known to exist, kept by the sequencer to check a first message's recipient without a read.</summary>
    public int UserCacheEntries { get; set; } = 100_000;

    /// <summary>Group memberships kept in memory (a snapshot per group: about 100 bytes per member).</summary>
    public int GroupCacheEntries { get; set; } = 10_000;

    /// <summary>
    /// Groups whose receipt aggregates are kept (about 200 bytes per member: two ordered cursor sets). An evicted
    /// group's aggregate is rebuilt from the stored cursors when it is next needed.
    /// </summary>
    public int GroupReceiptCacheEntries { get; set; } = 2_048;

    internal void Validate()
    {
        if (ConversationCacheEntries < 2 || CursorCacheEntries < 2 || UserCacheEntries < 2 || GroupCacheEntries < 2 || GroupReceiptCacheEntries < 2)
        {
            throw new InvalidOperationException("Switchboard:Messaging: cache sizes must be at least 2.");
        }

        if (MaxBodyBytes < 1 || MaxE2eeBytes < 1)
        {
            throw new InvalidOperationException("Switchboard:Messaging: body limits must be positive.");
        }

        if (EditWindowMinutes < 0 || DeleteWindowHours < 0)
        {
            throw new InvalidOperationException("Switchboard:Messaging: edit and delete windows cannot be negative.");
        }

        if (TypingThrottleMs < 0)
        {
            throw new InvalidOperationException("Switchboard:Messaging:TypingThrottleMs cannot be negative.");
        }

        if (DeviceBurst < 1 || DevicePerSecond < 1 || UserBurst < 1 || UserPerSecond < 1)
        {
            throw new InvalidOperationException("Switchboard:Messaging: rate limits must be positive.");
        }
    }
}
