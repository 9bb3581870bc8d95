using System.Text;
using System.Text.Json;
using Switchboard.Protocol;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Tests;

public sealed class FramesTests
{
    public static TheoryData<string> Events => new() { "text", "e2ee", "system", "edit", "unicode" };

    [Theory]
    [MemberData(nameof(Events))]
    public void An_event_written_straight_from_its_record_is_the_json_of_its_msg_frame(string shape)
    {
        var e = new EventRecord
        {
            Conv = "dm:alice:bob",
            Seq = 42,
            Id = 123_456_789_012_345,
            Ts = 1_765_000_000_123,
            Sender = "alice",
            Dev = 3,
            Kind = shape switch { "system" => EventKinds.System, "edit" => EventKinds.Edit, "e2ee" => EventKinds.Media, _ => EventKinds.Text },
            Cid = shape == "system" ? "system:9" : "c-\"quoted\"",
            Body = shape switch { "text" => "hello <b>", "edit" => "fixed", "unicode" => "héllo 👋\n", _ => null },
            E2ee = shape == "e2ee" ? "{\"ct\":\"AQID\",\"n\":[1,2]}" : null,
            ReplyTo = shape == "text" ? 7 : null,
            Target = shape == "edit" ? 41 : null,
            System = shape == "system" ? JsonSerializer.Serialize(new SystemInfo(SystemOps.Added, Users: ["carol"]), SwitchboardJsonContext.Default.SystemInfo) : null,
        };

        var direct = Encoding.UTF8.GetString(Frames.Event(e));
        var viaFrame = Encoding.UTF8.GetString(Frames.Serialize(Frames.ToMsgFrame(e, FrameTypes.Msg)));
        Assert.Equal(viaFrame, direct);
        Assert.Equal(e.Seq, JsonDocument.Parse(direct).RootElement.GetProperty("seq").GetInt64());
    }
}
