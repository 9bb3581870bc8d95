using System.Text;
using SharpFuzz;
using Switchboard.Fuzz;

// A fuzzing target for afl++ through SharpFuzz: `ci/fuzz.sh frames|upgrade MINUTES` builds, instruments and runs
// it. Each input goes through one parser; any exception that escapes it is a crash for afl to keep.
var target = args.Length > 0 ? args[0] : "frames";
if (!Targets.All.TryGetValue(target, out var run))
{
    Console.Error.WriteLine($"unknown target '{target}'; one of: {string.Join(", ", Targets.All.Keys)}");
    return 2;
}

Fuzzer.OutOfProcess.Run(stream =>
{
    using var copy = new MemoryStream();
    stream.CopyTo(copy);
    run(copy.ToArray());
});
return 0;

namespace Switchboard.Fuzz
{
    /// <summary>The parsers that read what anyone on the network sends, each as a function of raw bytes.</summary>
    public static class Targets
    {
        public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>
        {
            ["frames"] = Frames,
            ["upgrade"] = Upgrade,
        };

        public static void Frames(byte[] input)
        {
            var frame = Protocol.FrameReader.TryParse(input, out var error);
            if ((frame is null) == (error is null))
            {
                throw new InvalidOperationException("a frame and an error at once, or neither");
            }

            _ = Protocol.FrameFields.Type(input);
            _ = Protocol.FrameFields.String(input, "cid"u8);
        }

        public static void Upgrade(byte[] input)
        {
            _ = Server.Gateway.GatewayUpgrade.HasBareLineFeedOrNul(input, 0);
            var (status, key) = Server.Gateway.GatewayUpgrade.Parse(Encoding.Latin1.GetString(input));
            if (status is not (101 or 400 or 426) || (status == 101) != (key is not null))
            {
                throw new InvalidOperationException($"unexpected answer {status}");
            }
        }
    }
}
