namespace Switchboard.Protocol;

#pragma warning disable CS1591 // field names are those of PROTOCOL.md's HTTP table

/// <summary>Every HTTP error body.</summary>
public sealed record ErrorBody(string Error, string Message)
{
    /// <summary>With 429 <c>rate_limited</c>: milliseconds to wait before trying again (also in <c>Retry-After</c>, in seconds).</summary>
    public long? RetryAfter { get; init; }
}

/// <summary><c>POST /v1/accounts</c> body.</summary>
public sealed record RegisterRequest(string? User, string? Password);

/// <summary><c>POST /v1/accounts</c> answer.</summary>
public sealed record RegisterResponse(string User);

/// <summary><c>POST /v1/devices</c> body.</summary>
public sealed record LinkDeviceRequest(string? User, string? Password, string? Name);

/// <summary><c>POST /v1/devices</c> answer.</summary>
public sealed record LinkDeviceResponse(string User, int Device, string Token);

/// <summary>One row of <c>GET /v1/devices</c>.</summary>
public sealed record DeviceInfo(int Device, string Name, long Created, bool Current);

/// <summary>One row of <c>GET /v1/conversations</c>.</summary>
public sealed record ConversationInfo(string Conv, string Kind, long LastSeq, long Delivered, long Read, long Unread)
{
    /// <summary>What to call it: a group's name, or the other user's handle in a direct conversation.</summary>
    public string? Name { get; init; }

    /// <summary>Muted until this time (Unix ms; 9223372036854775807: until unmuted), or absent when not muted.</summary>
    public long? MutedUntil { get; init; }
}

/// <summary><c>GET /v1/conversations/{conv}/messages</c> answer.</summary>
public sealed record HistoryPage(IReadOnlyList<MsgFrame> Messages, bool More);

/// <summary>One row of <c>GET /v1/conversations/{conv}/receipts</c>.</summary>
public sealed record ReceiptRow(string User, long Delivered, long Read);

/// <summary><c>GET /v1/presence/{user}</c> answer.</summary>
public sealed record PresenceInfo(string User, bool Online, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.Never)] long? LastSeen);

/// <summary><c>POST /v1/groups</c> body.</summary>
public sealed record CreateGroupRequest(string? Name, string[]? Members);

/// <summary><c>PATCH /v1/groups/{conv}</c> body.</summary>
public sealed record RenameGroupRequest(string? Name);

/// <summary><c>POST /v1/groups/{conv}/members</c> body.</summary>
public sealed record AddMembersRequest(string[]? Users);

/// <summary><c>PUT /v1/groups/{conv}/members/{user}</c> body.</summary>
public sealed record RoleRequest(string? Role);

/// <summary>A member as listed by the group API.</summary>
public sealed record GroupMemberInfo(string User, string Role);

/// <summary>A group as answered by the group API.</summary>
public sealed record GroupInfo(string Conv, string Name, IReadOnlyList<GroupMemberInfo> Members)
{
    /// <summary>After an add: users whose privacy did not let the caller add them; each got an invite instead.</summary>
    public IReadOnlyList<string>? Invited { get; init; }
}

/// <summary>
/// <c>PUT /v1/devices/current/push</c>: where to wake this device. <c>webpush</c> needs <c>endpoint</c> and
/// <c>keys</c> (a browser's PushSubscription as JSON); <c>fcm</c> a <c>token</c>; <c>apns</c> a <c>token</c>, <c>topic</c>
/// and <c>sandbox</c>.
/// </summary>
public sealed record PushRegistrationRequest(string? Kind, string? Endpoint, PushKeys? Keys, string? Token, string? Topic, bool? Sandbox);

/// <summary>A Web Push subscription's keys, base64url: the browser's P-256 public key and its auth secret.</summary>
public sealed record PushKeys(string? P256dh, string? Auth);

/// <summary><c>GET /v1/push/vapid</c>: the server's VAPID public key, base64url, for a browser's <c>applicationServerKey</c>.</summary>
public sealed record VapidKey([property: System.Text.Json.Serialization.JsonPropertyName("publicKey")] string PublicKey);

/// <summary>What a push carries by default: which conversation and event to fetch, no text.</summary>
public sealed record PushPayload(string Conv, long Seq, string From, string Kind, long Unread)
{
    /// <summary>The text, only when the server allows it (<c>Push:IncludeText</c>) and the message is not end-to-end encrypted.</summary>
    public string? Body { get; init; }
}

/// <summary>
/// <c>GET /v1/conversations/{conv}/messages/{seq}/journey</c>: where a message is, per recipient device (all of them
/// for its sender, your own for a recipient).
/// </summary>
public sealed record JourneyInfo(string Conv, long Seq, string From, long StoredAt, IReadOnlyList<JourneyDevice> Devices);

/// <summary>One device: whether its cursors cover the message, and what the push worker did for it.</summary>
public sealed record JourneyDevice(string User, int Device, bool Delivered, bool Read, IReadOnlyList<JourneyStepInfo> Steps);

/// <summary>One step (<c>pushed</c>, <c>not pushed</c>, <c>collapsed</c>, <c>push refused</c>, <c>push failed</c>) at a time (Unix ms), with why.</summary>
public sealed record JourneyStepInfo(long At, string What, string? Detail);

/// <summary>A signed prekey: its id, the X25519 public key and the identity key's Ed25519 signature over it (base64url).</summary>
public sealed record SignedPrekey(int Id, string Key, string Signature);

/// <summary>A one-time prekey: its id and X25519 public key (base64url).</summary>
public sealed record OneTimePrekey(int Id, string Key);

/// <summary>
/// A device's X25519 identity key for agreement (X3DH), with its Ed25519 identity key's signature over
/// <c>"switchboard identity dh" ‖ key</c> (base64url).
/// </summary>
public sealed record IdentityDhKey(string Key, string Signature);

/// <summary>
/// <c>PUT /v1/devices/current/keys</c>: this device's identity key (Ed25519 public key, base64url), its signed prekey
/// and one-time prekeys to add. Each part may be left out to keep what is stored (rotate the signed prekey alone, top
/// up one-time prekeys alone).
/// </summary>
public sealed record KeyUpload(string? IdentityKey, SignedPrekey? SignedPrekey, IReadOnlyList<OneTimePrekey>? OneTimePrekeys)
{
    /// <summary>The X25519 identity key (required with the first upload and with a new identity key).</summary>
    public IdentityDhKey? IdentityDh { get; init; }
}

/// <summary>One device's keys to start a session with: a one-time prekey when one was left (it is now used up).</summary>
public sealed record KeyBundle(string User, int Device, string IdentityKey, SignedPrekey SignedPrekey)
{
    /// <summary>The device's X25519 identity key, signed by <see cref="IdentityKey"/>.</summary>
    public IdentityDhKey? IdentityDh { get; init; }

    /// <summary>A one-time prekey, handed out to this caller only; absent once the device has none left.</summary>
    public OneTimePrekey? OneTimePrekey { get; init; }
}

/// <summary><c>GET /v1/devices/current/keys</c>: how many one-time prekeys this device has left on the server.</summary>
public sealed record KeyCount(int OneTimePrekeys);

/// <summary><c>PUT /v1/conversations/{conv}/mute</c>: until when (Unix ms); absent, until unmuted.</summary>
public sealed record MuteRequest(long? Until);

/// <summary><c>GET|PUT /v1/settings/privacy</c>: who may add this user to groups, <c>everyone</c>, <c>contacts</c> or <c>nobody</c>.</summary>
public sealed record PrivacySettings(string? GroupsAdd);

/// <summary>One row of <c>GET /v1/invites</c>: a group this user was invited to, by whom, until when (ms).</summary>
public sealed record InviteInfo(string Conv, string Name, string From, long Ts, long Expires);

#pragma warning restore CS1591
