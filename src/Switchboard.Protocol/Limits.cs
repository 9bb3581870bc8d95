namespace Switchboard.Protocol;

/// <summary>Protocol-level limits that clients can rely on; servers may be configured lower.</summary>
public static class Limits
{
    /// <summary>Protocol version spoken.</summary>
    public const int Version = 1;
    /// <summary>Maximum UTF-8 bytes of a plain body.</summary>
    public const int MaxBodyBytes = 16 * 1024;
    /// <summary>Maximum characters of a cid.</summary>
    public const int MaxCidLength = 64;
    /// <summary>Default maximum WebSocket frame size.</summary>
    public const int DefaultMaxFrameBytes = 64 * 1024;
    /// <summary>Largest <c>sync</c> page.</summary>
    public const int MaxSyncLimit = 1000;
    /// <summary>Largest history page.</summary>
    public const int MaxHistoryLimit = 100;
    /// <summary>Default history page.</summary>
    public const int DefaultHistoryLimit = 50;
    /// <summary>Minimum password length.</summary>
    public const int MinPasswordLength = 8;
}
