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
}
