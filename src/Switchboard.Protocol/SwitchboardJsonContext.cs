using System.Text.Json.Serialization;

namespace Switchboard.Protocol;

/// <summary>
/// Source-generated JSON for every frame and HTTP body: snake_case names, nulls left out, no reflection.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict,
    AllowTrailingCommas = false,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Disallow,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(ClientFrame))]
[JsonSerializable(typeof(WelcomeFrame))]
[JsonSerializable(typeof(AckFrame))]
[JsonSerializable(typeof(MsgFrame))]
[JsonSerializable(typeof(ReceiptFrame))]
[JsonSerializable(typeof(TypingFrame))]
[JsonSerializable(typeof(PresenceFrame))]
[JsonSerializable(typeof(SyncedFrame))]
[JsonSerializable(typeof(KeysLowFrame))]
[JsonSerializable(typeof(DecryptFailedFrame))]
[JsonSerializable(typeof(ResendFrame))]
[JsonSerializable(typeof(SignalFrame))]
[JsonSerializable(typeof(ErrorFrame))]
[JsonSerializable(typeof(SystemInfo))]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(RegisterRequest))]
[JsonSerializable(typeof(RegisterResponse))]
[JsonSerializable(typeof(LinkDeviceRequest))]
[JsonSerializable(typeof(LinkDeviceResponse))]
[JsonSerializable(typeof(DeviceInfo[]))]
[JsonSerializable(typeof(List<DeviceInfo>))]
[JsonSerializable(typeof(PrivacySettings))]
[JsonSerializable(typeof(MuteRequest))]
[JsonSerializable(typeof(PushRegistrationRequest))]
[JsonSerializable(typeof(VapidKey))]
[JsonSerializable(typeof(PushPayload))]
[JsonSerializable(typeof(JourneyInfo))]
[JsonSerializable(typeof(KeyUpload))]
[JsonSerializable(typeof(List<KeyBundle>))]
[JsonSerializable(typeof(KeyCount))]
[JsonSerializable(typeof(List<InviteInfo>))]
[JsonSerializable(typeof(List<ConversationInfo>))]
[JsonSerializable(typeof(HistoryPage))]
[JsonSerializable(typeof(List<ReceiptRow>))]
[JsonSerializable(typeof(PresenceInfo))]
[JsonSerializable(typeof(CreateGroupRequest))]
[JsonSerializable(typeof(RenameGroupRequest))]
[JsonSerializable(typeof(AddMembersRequest))]
[JsonSerializable(typeof(RoleRequest))]
[JsonSerializable(typeof(GroupInfo))]
internal sealed partial class SwitchboardJsonContext : JsonSerializerContext;
