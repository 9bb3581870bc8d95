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
    public static byte[] Serialize(DecryptFailedFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.DecryptFailedFrame);
    public static byte[] Serialize(ResendFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, SwitchboardJsonContext.Default.ResendFrame);

    public static byte[] Error(string code, string message, string? reference = null) =>
        Serialize(new ErrorFrame(code, message, reference));

    /// <summary>
    /// A stored event as a <c>msg</c> frame, written straight from the record (the same JSON as serialising a
    /// <see cref="MsgFrame"/>: snake_case, nulls left out, <c>e2ee</c> and <c>system</c> as the JSON they are
    /// stored as). Every event is written once per delivery and once per replayed page entry. With a
    /// <paramref name="viewer"/>, the <c>e2ee</c> payload holds that device's own ciphertext only.
    /// </summary>
    public static byte[] Event(Storage.EventRecord e, (string User, int Device)? viewer = null)
    {
        var buffer = _eventBuffer ??= new System.Buffers.ArrayBufferWriter<byte>(512);
        buffer.ResetWrittenCount();
        var writer = _eventWriter ??= new Utf8JsonWriter(buffer);
        writer.Reset(buffer);
        writer.WriteStartObject();
        writer.WriteString(TProperty, FrameTypes.Msg);
        writer.WriteString(ConvProperty, e.Conv);
        writer.WriteNumber(SeqProperty, e.Seq);
        Span<byte> id = stackalloc byte[20];
        e.Id.TryFormat(id, out var idLength, default, System.Globalization.CultureInfo.InvariantCulture);
        writer.WriteString(IdProperty, id[..idLength]);
        writer.WriteNumber(TsProperty, e.Ts);
        writer.WriteString(FromProperty, e.Sender);
        writer.WriteNumber(DevProperty, e.Dev);
        writer.WriteString(KindProperty, e.Kind);
        writer.WriteString(CidProperty, e.Cid);
        if (e.Body is { } body)
        {
            writer.WriteString(BodyProperty, body);
        }

        if (e.E2ee is { } e2ee)
        {
            writer.WritePropertyName(E2eeProperty);
            writer.WriteRawValue(viewer is { } v ? E2eePayload.ForDevice(e2ee, v.User, v.Device) : e2ee, skipInputValidation: true); // checked when it was received
        }

        if (e.ReplyTo is { } replyTo)
        {
            writer.WriteNumber(ReplyToProperty, replyTo);
        }

        if (e.Target is { } target)
        {
            writer.WriteNumber(TargetProperty, target);
        }

        if (e.System is { } system)
        {
            writer.WritePropertyName(SystemProperty);
            writer.WriteRawValue(system, skipInputValidation: true); // written by the server
        }

        writer.WriteEndObject();
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }

    [ThreadStatic]
    private static System.Buffers.ArrayBufferWriter<byte>? _eventBuffer;

    [ThreadStatic]
    private static Utf8JsonWriter? _eventWriter;

    private static readonly JsonEncodedText TProperty = JsonEncodedText.Encode("t");
    private static readonly JsonEncodedText ConvProperty = JsonEncodedText.Encode("conv");
    private static readonly JsonEncodedText SeqProperty = JsonEncodedText.Encode("seq");
    private static readonly JsonEncodedText IdProperty = JsonEncodedText.Encode("id");
    private static readonly JsonEncodedText TsProperty = JsonEncodedText.Encode("ts");
    private static readonly JsonEncodedText FromProperty = JsonEncodedText.Encode("from");
    private static readonly JsonEncodedText DevProperty = JsonEncodedText.Encode("dev");
    private static readonly JsonEncodedText KindProperty = JsonEncodedText.Encode("kind");
    private static readonly JsonEncodedText CidProperty = JsonEncodedText.Encode("cid");
    private static readonly JsonEncodedText BodyProperty = JsonEncodedText.Encode("body");
    private static readonly JsonEncodedText E2eeProperty = JsonEncodedText.Encode("e2ee");
    private static readonly JsonEncodedText ReplyToProperty = JsonEncodedText.Encode("reply_to");
    private static readonly JsonEncodedText TargetProperty = JsonEncodedText.Encode("target");
    private static readonly JsonEncodedText SystemProperty = JsonEncodedText.Encode("system");

    /// <summary>A stored event in its wire shape; <paramref name="type"/> is <c>msg</c> on sockets, null in history pages.</summary>
    public static MsgFrame ToMsgFrame(Storage.EventRecord e, string? type, (string User, int Device)? viewer = null) => new()
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
        E2ee = e.E2ee is { } e2ee ? ParseJson(viewer is { } v ? E2eePayload.ForDevice(e2ee, v.User, v.Device) : e2ee) : null,
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
