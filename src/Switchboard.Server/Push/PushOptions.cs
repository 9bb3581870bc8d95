namespace Switchboard.Server.Push;

/// <summary>Push notifications for devices without a live socket, bound from <c>Switchboard:Push</c>.</summary>
public sealed class PushOptions
{
    /// <summary>Pushes are sent at all.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Push endpoints on loopback, private or link-local addresses are refused (a registration could otherwise make
    /// the server call into its own network). For tests and closed networks only.
    /// </summary>
    public bool AllowPrivateEndpoints { get; set; }

    /// <summary>Milliseconds a push waits for more events of the same conversation (one push for a burst).</summary>
    public int CoalesceMilliseconds { get; set; } = 1000;

    /// <summary>Adds the body of a plain (not end-to-end encrypted) text message to its push, truncated. Off: pushes carry no text.</summary>
    public bool IncludeText { get; set; }

    /// <summary>Characters of text kept when <see cref="IncludeText"/> is on.</summary>
    public int MaxTextChars { get; set; } = 100;

    /// <summary>The VAPID contact (<c>mailto:</c> or <c>https:</c>) push services may reach about this server.</summary>
    public string VapidSubject { get; set; } = "mailto:postmaster@localhost";

    /// <summary>VAPID keys (base64url P-256 public key and private scalar). Unset: made on first start and kept in the data dir.</summary>
    public string? VapidPublicKey { get; set; }

    public string? VapidPrivateKey { get; set; }

    /// <summary>Seconds one request to a push service may take.</summary>
    public int TimeoutSeconds { get; set; } = 10;

    /// <summary>Events waiting to be turned into pushes; past it they are dropped (counted), never memory.</summary>
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Firebase Cloud Messaging (Android): the service account and the endpoint.</summary>
    public FcmOptions Fcm { get; set; } = new();

    /// <summary>Apple Push Notification service (iOS): the signing key and the endpoints.</summary>
    public ApnsOptions Apns { get; set; } = new();

    /// <summary>Messages whose push steps are kept for their journey (in memory); the oldest are forgotten first.</summary>
    public int JournalEvents { get; set; } = 100_000;

    internal void Validate()
    {
        if (JournalEvents is < 1 or > 10_000_000)
        {
            throw new InvalidOperationException("Switchboard:Push:JournalEvents must be between 1 and 10000000.");
        }

        if (CoalesceMilliseconds is < 0 or > 600_000 || MaxTextChars is < 1 or > 4000 || TimeoutSeconds is < 1 or > 300 || QueueCapacity < 1)
        {
            throw new InvalidOperationException("Switchboard:Push: CoalesceMilliseconds must be 0–600000, MaxTextChars 1–4000, TimeoutSeconds 1–300, QueueCapacity at least 1.");
        }

        if (!(VapidSubject.StartsWith("mailto:", StringComparison.Ordinal) || VapidSubject.StartsWith("https://", StringComparison.Ordinal)))
        {
            throw new InvalidOperationException("Switchboard:Push:VapidSubject must be a mailto: or https: URI.");
        }

        if ((Apns.KeyFile is null) != (Apns.KeyId is null) || (Apns.KeyFile is null) != (Apns.TeamId is null))
        {
            throw new InvalidOperationException("Switchboard:Push:Apns: KeyFile, KeyId and TeamId go together.");
        }

        if ((VapidPublicKey is null) != (VapidPrivateKey is null))
        {
            throw new InvalidOperationException("Switchboard:Push: VapidPublicKey and VapidPrivateKey go together.");
        }
    }
}
