using Switchboard.Protocol;

namespace Switchboard.Client;

/// <summary>The state of a client's connection.</summary>
public enum ConnectionState
{
    /// <summary>Not started, or stopped by <see cref="SwitchboardClient.DisposeAsync"/>.</summary>
    Disconnected,
    /// <summary>Opening a socket and saying hello.</summary>
    Connecting,
    /// <summary>Authenticated; missed events are being replayed.</summary>
    Connected,
    /// <summary>Caught up: events now arrive as they happen.</summary>
    Live,
    /// <summary>The socket dropped; waiting (jittered backoff) before the next attempt.</summary>
    Reconnecting,
    /// <summary>The server refused the token (1008) or a newer socket of this device took over (4001): no more attempts.</summary>
    Stopped,
}

/// <summary>Something that happened on the connection, in the order it happened.</summary>
public abstract record ClientEvent;

/// <summary>A new event of a conversation, delivered once and in seq order per conversation.</summary>
/// <param name="Message">The event; <see cref="MsgFrame.Kind"/> says whether it is text, media, an edit, a delete or a system event.</param>
public sealed record MessageReceived(MsgFrame Message) : ClientEvent
{
    /// <summary>The text: the body of a plain message, or an encrypted one's decrypted text (null when it could not be decrypted).</summary>
    public string? Text { get; init; }

    /// <summary>Why an encrypted message could not be decrypted (tampered, replayed, no session, not for this device); null otherwise.</summary>
    public string? DecryptionError { get; init; }
}

/// <summary>
/// A message this device could not decrypt when it came (its <see cref="MessageReceived.DecryptionError"/> said why)
/// was sent again by its sender on a new session, and is readable now.
/// </summary>
/// <param name="Conv">The conversation.</param>
/// <param name="Seq">The message's seq.</param>
/// <param name="From">Its sender.</param>
/// <param name="Text">Its text.</param>
public sealed record MessageDecrypted(string Conv, long Seq, string From, string Text) : ClientEvent;

/// <summary>A peer device's identity key is not the one seen before: its safety number changed.</summary>
/// <param name="User">The peer.</param>
/// <param name="Device">Its device.</param>
public sealed record IdentityChanged(string User, int Device) : ClientEvent;

/// <summary>A member's delivered or read cursor moved (<c>user</c> is <c>*</c> for a group's aggregate).</summary>
/// <param name="Receipt">The receipt.</param>
public sealed record ReceiptReceived(ReceiptFrame Receipt) : ClientEvent;

/// <summary>Someone started or stopped typing. An <c>on</c> should be treated as expired after 5 seconds.</summary>
/// <param name="Typing">The typing frame.</param>
public sealed record TypingReceived(TypingFrame Typing) : ClientEvent;

/// <summary>A watched user's presence, first as it is, then each change.</summary>
/// <param name="Presence">The presence frame.</param>
public sealed record PresenceReceived(PresenceFrame Presence) : ClientEvent;

/// <summary>The connection changed state.</summary>
/// <param name="State">The new state.</param>
/// <param name="CloseCode">The WebSocket close code that caused it, if any.</param>
public sealed record ConnectionChanged(ConnectionState State, int? CloseCode = null) : ClientEvent;

/// <summary>An error the server sent that is not the answer to one of this client's sends.</summary>
/// <param name="Error">The error frame.</param>
public sealed record ServerError(ErrorFrame Error) : ClientEvent;

/// <summary>A send, edit or delete was refused for good.</summary>
public sealed class SwitchboardException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SwitchboardException(string code, string message)
        : base($"{code}: {message}")
    {
        Code = code;
    }

    /// <summary>Creates the exception.</summary>
    public SwitchboardException()
        : this(ErrorCodes.Internal, "unknown error")
    {
    }

    /// <summary>Creates the exception.</summary>
    public SwitchboardException(string message)
        : this(ErrorCodes.Internal, message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public SwitchboardException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = ErrorCodes.Internal;
    }

    /// <summary>The error code from the protocol's table (or HTTP body).</summary>
    public string Code { get; }

    /// <summary>The HTTP status, for HTTP calls.</summary>
    public int? Status { get; init; }

    /// <summary>With <c>rate_limited</c>: how long the server asked to wait before trying again.</summary>
    public TimeSpan? RetryAfter { get; init; }
}
