using System.Text.Json;
using System.Text.Json.Serialization;

namespace Switchboard.Protocol;

/// <summary>Frame type names (the <c>t</c> field).</summary>
public static class FrameTypes
{
#pragma warning disable CS1591 // the names are the documentation
    public const string Hello = "hello";
    public const string Welcome = "welcome";
    public const string Send = "send";
    public const string Recv = "recv";
    public const string Read = "read";
    public const string Typing = "typing";
    public const string Watch = "watch";
    public const string Edit = "edit";
    public const string Delete = "delete";
    public const string Sync = "sync";
    public const string Ping = "ping";
    public const string Pong = "pong";
    public const string Ack = "ack";
    public const string Msg = "msg";
    public const string Receipt = "receipt";
    public const string Presence = "presence";
    public const string Live = "live";
    public const string Synced = "synced";
    public const string KeysLow = "keys_low";
    public const string DecryptFailed = "decrypt_failed";
    public const string Resend = "resend";
    public const string Error = "error";
#pragma warning restore CS1591
}

/// <summary>
/// Any frame a client sends. One flat shape: which fields are required depends on <see cref="T"/>; the server
/// checks them and answers <c>bad_frame</c> when one is missing or ill-typed.
/// </summary>
public sealed class ClientFrame
{
    /// <summary>Frame type.</summary>
    public string? T { get; set; }
    /// <summary>Protocol version (hello).</summary>
    public int? V { get; set; }
    /// <summary>Device token (hello).</summary>
    public string? Token { get; set; }
    /// <summary>Client-made id of a send, edit or delete.</summary>
    public string? Cid { get; set; }
    /// <summary>Conversation id.</summary>
    public string? Conv { get; set; }
    /// <summary>Event kind of a send: text or media.</summary>
    public string? Kind { get; set; }
    /// <summary>Plain body.</summary>
    public string? Body { get; set; }
    /// <summary>End-to-end encrypted payload.</summary>
    public JsonElement? E2ee { get; set; }
    /// <summary>Seq this message replies to.</summary>
    public long? ReplyTo { get; set; }
    /// <summary>Cursor position (recv, read).</summary>
    public long? Seq { get; set; }
    /// <summary>Typing state.</summary>
    public bool? On { get; set; }
    /// <summary>Users to watch.</summary>
    public string[]? Users { get; set; }
    /// <summary>Target seq of an edit or delete.</summary>
    public long? Target { get; set; }
    /// <summary>Sync start (exclusive).</summary>
    public long? After { get; set; }
    /// <summary>Sync page size.</summary>
    public int? Limit { get; set; }
    /// <summary>The user a resend is for.</summary>
    public string? User { get; set; }
    /// <summary>The device a resend is for.</summary>
    public int? Device { get; set; }
}

/// <summary>Server → client: handshake accepted.</summary>
public sealed record WelcomeFrame(string User, int Device, long Ts, int Heartbeat)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Welcome;
}

/// <summary>Server → client: the event is durable.</summary>
public sealed record AckFrame(string Cid, string Conv, long Seq, string Id, long Ts, bool Dup)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Ack;
}

/// <summary>
/// What a <c>system</c> event says happened: <c>op</c> is created, added, removed, left, renamed or role.
/// <c>promoted</c> names who became admin because the last admin left.
/// </summary>
public sealed record SystemInfo(string Op, string[]? Users = null, string? Name = null, string? Role = null, string[]? Promoted = null)
{
    /// <summary>With <c>identity_changed</c>: the device of <c>users[0]</c> whose identity key changed.</summary>
    public int? Device { get; init; }
}

/// <summary>Operations carried by <c>system</c> events.</summary>
public static class SystemOps
{
#pragma warning disable CS1591 // the names are the documentation
    public const string Created = "created";
    public const string Added = "added";
    public const string Removed = "removed";
    public const string Left = "left";
    public const string Renamed = "renamed";
    public const string Role = "role";
    public const string IdentityChanged = "identity_changed";
#pragma warning restore CS1591
}

/// <summary>Member roles in a group.</summary>
public static class Roles
{
    /// <summary>May add, remove, rename, change roles and delete others' messages.</summary>
    public const string Admin = "admin";
    /// <summary>An ordinary member.</summary>
    public const string Member = "member";
}

/// <summary>
/// A stored event. As a live or replayed frame <see cref="T"/> is <c>msg</c>; in history pages it is null
/// and left out.
/// </summary>
public sealed record MsgFrame
{
    /// <summary>Frame type, or null in history pages.</summary>
    [JsonPropertyOrder(-1)] public string? T { get; init; }
    /// <summary>Conversation.</summary>
    public required string Conv { get; init; }
    /// <summary>Position in the conversation.</summary>
    public required long Seq { get; init; }
    /// <summary>Time-ordered id as a decimal string.</summary>
    public required string Id { get; init; }
    /// <summary>Server time, Unix ms.</summary>
    public required long Ts { get; init; }
    /// <summary>Author.</summary>
    public required string From { get; init; }
    /// <summary>Author's device.</summary>
    public required int Dev { get; init; }
    /// <summary>Event kind.</summary>
    public required string Kind { get; init; }
    /// <summary>Client id of the event (empty for server-made events).</summary>
    public required string Cid { get; init; }
    /// <summary>Plain body.</summary>
    public string? Body { get; init; }
    /// <summary>Encrypted payload.</summary>
    public JsonElement? E2ee { get; init; }
    /// <summary>Seq replied to.</summary>
    public long? ReplyTo { get; init; }
    /// <summary>Target of an edit or delete.</summary>
    public long? Target { get; init; }
    /// <summary>What a system event says.</summary>
    public SystemInfo? System { get; init; }
}

/// <summary>One device of one user.</summary>
public sealed record DeviceAddress(string User, int Device);

/// <summary>Server → client: a member's cursor moved.</summary>
public sealed record ReceiptFrame(string Conv, string User, string Kind, long Seq)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Receipt;
}

/// <summary>Server → client: someone is typing.</summary>
public sealed record TypingFrame(string Conv, string User, bool On)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Typing;
}

/// <summary>Server → client: presence of a watched user.</summary>
public sealed record PresenceFrame(string User, bool Online, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] long? LastSeen)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Presence;
}

/// <summary>Server → client: this device has few one-time prekeys left on the server; upload more.</summary>
/// <summary>
/// Server → the devices of a message's sender: <paramref name="User"/>'s device <paramref name="Device"/> could not
/// decrypt the message at <paramref name="Seq"/>, which device <paramref name="Dev"/> sent; that device sends it again
/// (<c>resend</c>) on a new session. No content.
/// </summary>
public sealed record DecryptFailedFrame(string Conv, long Seq, string User, int Device, int Dev)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.DecryptFailed;
}

/// <summary>Server → the devices of <c>user</c> a resend was made for: the message at <paramref name="Seq"/> again, encrypted for one of them (<c>e2ee.to</c>).</summary>
public sealed record ResendFrame(string Conv, long Seq, string From, int Dev, JsonElement E2ee)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Resend;
}

/// <summary>Server → client: this device's one-time prekeys are running low.</summary>
public sealed record KeysLowFrame(int Count)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.KeysLow;
}

/// <summary>Server → client: the sync answer is complete.</summary>
public sealed record SyncedFrame(string Conv, long Upto, bool More)
{
    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Synced;
}

/// <summary>Server → client: a frame with only a type (live, pong).</summary>
public sealed record SignalFrame(string T);

/// <summary>Server → client: something went wrong.</summary>
public sealed record ErrorFrame(string Code, string Message, string? Ref = null, long? RetryAfter = null, int[]? Devices = null)
{
    /// <summary>With <c>devices_changed</c>: every device the message must be encrypted for now.</summary>
    public IReadOnlyList<DeviceAddress>? Recipients { get; init; }

    /// <summary>Frame type.</summary>
    [JsonPropertyOrder(-1)] public string T => FrameTypes.Error;
}
