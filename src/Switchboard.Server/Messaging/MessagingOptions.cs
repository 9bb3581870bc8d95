namespace Switchboard.Server.Messaging;

/// <summary>Settings of the message path, bound from <c>Switchboard:Messaging</c>.</summary>
public sealed class MessagingOptions
{
    /// <summary>Largest plain body in UTF-8 bytes (the protocol's 16 KiB).</summary>
    public int MaxBodyBytes { get; set; } = Protocol.Limits.MaxBodyBytes;

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

    internal void Validate()
    {
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
