namespace Switchboard.Protocol;

/// <summary>The error codes of the protocol, carried in <c>error</c> frames and HTTP error bodies.</summary>
public static class ErrorCodes
{
    /// <summary>Not JSON, unknown <c>t</c>, missing or ill-typed field. Not retried.</summary>
    public const string BadFrame = "bad_frame";
    /// <summary>HTTP 400: malformed or out-of-range input.</summary>
    public const string Invalid = "invalid";
    /// <summary>HTTP 409: already taken.</summary>
    public const string Conflict = "conflict";
    /// <summary>No or bad token.</summary>
    public const string Unauthorized = "unauthorized";
    /// <summary>Not a member, or not allowed.</summary>
    public const string Forbidden = "forbidden";
    /// <summary>Unknown user, group or target.</summary>
    public const string NotFound = "not_found";
    /// <summary>Body or frame over its limit.</summary>
    public const string TooLarge = "too_large";
    /// <summary>Over a per-device or per-user rate; <c>retry_after</c> says when to retry.</summary>
    public const string RateLimited = "rate_limited";
    /// <summary>E2EE device set is stale.</summary>
    public const string DevicesChanged = "devices_changed";
    /// <summary>The event could not be made durable; retry with the same cid.</summary>
    public const string Unavailable = "unavailable";
    /// <summary>A bug, logged with a reference; retry with the same cid.</summary>
    public const string Internal = "internal";
}

/// <summary>WebSocket close codes used by the server.</summary>
public static class CloseCodes
{
    /// <summary>The socket was silent for three heartbeats.</summary>
    public const int SilentTooLong = 1001;
    /// <summary>Policy: no hello in time, bad token, wrong version, device unlinked.</summary>
    public const int Policy = 1008;
    /// <summary>A frame over the size limit.</summary>
    public const int TooBig = 1009;
    /// <summary>The server failed internally while serving the socket; reconnect.</summary>
    public const int InternalError = 1011;
    /// <summary>A newer socket of the same device took over.</summary>
    public const int Replaced = 4001;
    /// <summary>The client did not read fast enough; its outbound queue filled.</summary>
    public const int TooSlow = 4002;
    /// <summary>The server is draining; reconnect elsewhere with jittered backoff.</summary>
    public const int Draining = 4003;
}

/// <summary>Event kinds stored in a conversation.</summary>
public static class EventKinds
{
    /// <summary>A plain or encrypted text message.</summary>
    public const string Text = "text";
    /// <summary>A media message; the body is opaque.</summary>
    public const string Media = "media";
    /// <summary>An edit naming its target seq.</summary>
    public const string Edit = "edit";
    /// <summary>A delete naming its target seq.</summary>
    public const string Delete = "delete";
    /// <summary>A group's sender keys handed to member devices ahead of a message (e2ee only; clients do not show it).</summary>
    public const string Key = "key";
    /// <summary>A server-made membership or group change.</summary>
    public const string System = "system";
}

/// <summary>Receipt kinds.</summary>
public static class ReceiptKinds
{
    /// <summary>Delivered to at least one device of the member (the double tick).</summary>
    public const string Delivered = "delivered";
    /// <summary>Read by the member (the blue tick).</summary>
    public const string Read = "read";
}
