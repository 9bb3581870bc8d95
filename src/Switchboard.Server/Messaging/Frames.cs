using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Server.Messaging;

/// <summary>Serialises server frames once, with the source-generated context, into bytes that sockets share.</summary>
internal static class Frames
{
    public static readonly byte[] Live = Serialize(new SignalFrame(FrameTypes.Live));
    public static readonly byte[] Pong = Serialize(new SignalFrame(FrameTypes.Pong));

    public static byte[] Serialize(SignalFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.SignalFrame);
    public static byte[] Serialize(WelcomeFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.WelcomeFrame);
    public static byte[] Serialize(AckFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.AckFrame);
    public static byte[] Serialize(MsgFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.MsgFrame);
    public static byte[] Serialize(ReceiptFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.ReceiptFrame);
    public static byte[] Serialize(TypingFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.TypingFrame);
    public static byte[] Serialize(PresenceFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.PresenceFrame);
    public static byte[] Serialize(SyncedFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.SyncedFrame);
    public static byte[] Serialize(ErrorFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.ErrorFrame);

    public static byte[] Error(string code, string message, string? reference = null) =>
        Serialize(new ErrorFrame(code, message, reference));

    /// <summary>A stored event as a <c>msg</c> frame.</summary>
    public static byte[] Event(Storage.EventRecord e) => Serialize(ToMsgFrame(e, FrameTypes.Msg));

    /// <summary>A stored event in its wire shape; <paramref name="type"/> is <c>msg</c> on sockets, null in history pages.</summary>
    public static MsgFrame ToMsgFrame(Storage.EventRecord e, string? type) => new()
    {
        T = type,
        Conv = e.Conv,
        Seq = e.Seq,
        Id = e.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
        Ts = e.Ts,
        From = e.Sender,
        Dev = e.Dev,
        Kind = e.Kind,
        Cid = e.Cid,
        Body = e.Body,
        E2ee = e.E2ee is { } e2ee ? ParseJson(e2ee) : null,
        ReplyTo = e.ReplyTo,
        Target = e.Target,
        System = e.System is { } system ? JsonSerializer.Deserialize(system, SwitchboardJsonContext.Default.SystemInfo) : null,
    };

    private static JsonElement ParseJson(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }
}
