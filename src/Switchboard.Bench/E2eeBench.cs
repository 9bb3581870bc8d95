using System.Diagnostics;
using System.Text;
using System.Text.Json;
using HdrHistogram;
using Switchboard.Client.E2ee;
using Switchboard.Protocol;

namespace Switchboard.Bench;

/// <summary>What <c>bench e2ee</c> measures.</summary>
internal sealed record E2eeBenchOptions(int Messages, int BodyBytes, int Members, bool Json);

/// <summary>
/// The client's cost of end-to-end encryption, with the SDK's own code and in-memory stores (no server: this is what a
/// device spends, apart from the network): starting sessions (X3DH), encrypting and decrypting direct messages for
/// one and for five devices, a group message with Sender Keys (the first, which hands the key to every member
/// device, and the ones after), and what encryption adds to a message's size on the wire.
/// </summary>
internal sealed class E2eeBench(E2eeBenchOptions options)
{
    private sealed class Device
    {
        public Device(string user, int number, Dictionary<(string, int), KeyUpload> directory)
        {
            Address = new DeviceAddress(user, number);
            E2e = new EndToEnd(new InMemoryE2eeStore(), (u, d, _) => Task.FromResult(directory
                .Where(p => p.Key.Item1 == u && (d is null || p.Key.Item2 == d))
                .Select(p => new KeyBundle(p.Key.Item1, p.Key.Item2, p.Value.IdentityKey!, p.Value.SignedPrekey!) { IdentityDh = p.Value.IdentityDh, OneTimePrekey = p.Value.OneTimePrekeys![Next(p.Key)] })
                .ToList()));
            directory[(user, number)] = E2e.NewKeysAsync().GetAwaiter().GetResult()!;
        }

        public DeviceAddress Address { get; }
        public EndToEnd E2e { get; }

        private static readonly Dictionary<(string, int), int> Handed = [];

        private static int Next((string, int) key)
        {
            lock (Handed)
            {
                var n = Handed.GetValueOrDefault(key);
                Handed[key] = n + 1;
                return n % EndToEnd.OneTimePrekeysPerUpload;
            }
        }
    }

    private static MsgFrame Frame(string conv, Device from, JsonElement e2ee, Device to)
    {
        // As the server hands it over: only the reader's own pairwise entry.
        var node = System.Text.Json.Nodes.JsonNode.Parse(e2ee.GetRawText())!.AsObject();
        if (node["to"] is System.Text.Json.Nodes.JsonArray list)
        {
            node["to"] = new System.Text.Json.Nodes.JsonArray([.. list.Where(e => (string)e!["user"]! == to.Address.User && (int)e!["device"]! == to.Address.Device).Select(e => e!.DeepClone())]);
        }

        return new MsgFrame { Conv = conv, Seq = 1, Id = "1", Ts = 0, From = from.Address.User, Dev = from.Address.Device, Kind = "text", Cid = "c", E2ee = JsonSerializer.SerializeToElement(node) };
    }

    private static async Task<long> TimeAsync(LongHistogram histogram, Func<Task> action)
    {
        var start = Stopwatch.GetTimestamp();
        await action();
        var elapsed = Stopwatch.GetTimestamp() - start;
        Report.Record(histogram, elapsed);
        return elapsed;
    }

    public async Task<int> RunAsync()
    {
        var body = new string('x', Math.Max(1, options.BodyBytes));
        var content = new Content { Body = body };
        var directory = new Dictionary<(string, int), KeyUpload>();
        var report = new Dictionary<string, object?> { ["messages"] = options.Messages, ["body_bytes"] = Encoding.UTF8.GetByteCount(body) };

        // Sessions: X3DH and the first (prekey) message, both sides.
        var start = new LongHistogram(TimeStamp.Minutes(10), 3);
        for (var i = 0; i < Math.Min(200, options.Messages); i++)
        {
            var a = new Device($"a{i}", 1, directory);
            var b = new Device($"b{i}", 1, directory);
            await TimeAsync(start, async () =>
            {
                var first = await a.E2e.SealDirectAsync([b.Address], content, CancellationToken.None);
                await b.E2e.OpenAsync(Frame("dm", a, first, b), b.Address.User, b.Address.Device);
            });
        }

        report["session_start_ms"] = Report.Percentiles(start);

        // Direct messages between two devices, a reply every tenth (a Diffie-Hellman step each time).
        var alice = new Device("alice", 1, directory);
        var bob = new Device("bob", 1, directory);
        var encrypt = new LongHistogram(TimeStamp.Minutes(10), 3);
        var decrypt = new LongHistogram(TimeStamp.Minutes(10), 3);
        long directBytes = 0;
        for (var i = 0; i < options.Messages; i++)
        {
            var (from, to) = i % 10 == 9 ? (bob, alice) : (alice, bob);
            JsonElement sealedPayload = default;
            await TimeAsync(encrypt, async () => sealedPayload = await from.E2e.SealDirectAsync([to.Address], content, CancellationToken.None));
            await TimeAsync(decrypt, () => to.E2e.OpenAsync(Frame("dm", from, sealedPayload, to), to.Address.User, to.Address.Device));
            directBytes += Encoding.UTF8.GetByteCount(sealedPayload.GetRawText());
        }

        report["direct_encrypt_ms"] = Report.Percentiles(encrypt);
        report["direct_decrypt_ms"] = Report.Percentiles(decrypt);
        report["direct_e2ee_bytes"] = directBytes / options.Messages;

        // Two users with three devices each: a message is encrypted for the five others.
        var mine = Enumerable.Range(1, 3).Select(n => new Device("carol", n, directory)).ToList();
        var theirs = Enumerable.Range(1, 3).Select(n => new Device("dave", n, directory)).ToList();
        var others = mine.Skip(1).Concat(theirs).Select(d => d.Address).ToList();
        var fiveWay = new LongHistogram(TimeStamp.Minutes(10), 3);
        long fiveBytes = 0;
        for (var i = 0; i < options.Messages; i++)
        {
            JsonElement sealedPayload = default;
            await TimeAsync(fiveWay, async () => sealedPayload = await mine[0].E2e.SealDirectAsync(others, content, CancellationToken.None));
            fiveBytes += Encoding.UTF8.GetByteCount(sealedPayload.GetRawText());
            if (i == 0)
            {
                foreach (var reader in mine.Skip(1).Concat(theirs))
                {
                    await reader.E2e.OpenAsync(Frame("dm", mine[0], sealedPayload, reader), reader.Address.User, reader.Address.Device);
                }
            }
        }

        report["direct_5_devices_encrypt_ms"] = Report.Percentiles(fiveWay);
        report["direct_5_devices_e2ee_bytes"] = fiveBytes / options.Messages;

        // A group: the first message hands the sender key to every member device; then one ciphertext for all.
        var members = Enumerable.Range(0, options.Members - 1).Select(i => new Device($"m{i}", 1, directory)).ToList();
        var owner = new Device("owner", 1, directory);
        var addresses = members.Select(m => m.Address).ToList();
        JsonElement handout = default;
        var keyEvents = new List<JsonElement>();
        var handoutTicks = await TimeAsync(new LongHistogram(TimeStamp.Minutes(10), 3), async () => handout = await owner.E2e.SealGroupAsync("grp:1", addresses, content, CancellationToken.None, keyEvents));
        report["group_members"] = options.Members;
        report["group_first_send_ms"] = Math.Round(Stopwatch.GetElapsedTime(0, handoutTicks).TotalMilliseconds, 1);
        report["group_first_send_key_events"] = keyEvents.Count;
        report["group_first_send_e2ee_bytes"] = Encoding.UTF8.GetByteCount(handout.GetRawText()) + keyEvents.Sum(k => Encoding.UTF8.GetByteCount(k.GetRawText()));
        var reader0 = members[0];
        foreach (var keyEvent in keyEvents.Append(handout))
        {
            var frame = Frame("grp:1", owner, keyEvent, reader0) with { Kind = keyEvent.TryGetProperty("sk", out _) ? "text" : "key" };
            await reader0.E2e.OpenAsync(frame, reader0.Address.User, reader0.Address.Device);
        }

        var groupEncrypt = new LongHistogram(TimeStamp.Minutes(10), 3);
        var groupDecrypt = new LongHistogram(TimeStamp.Minutes(10), 3);
        long groupBytes = 0;
        for (var i = 0; i < options.Messages; i++)
        {
            JsonElement sealedPayload = default;
            await TimeAsync(groupEncrypt, async () => sealedPayload = await owner.E2e.SealGroupAsync("grp:1", addresses, content, CancellationToken.None, []));
            await TimeAsync(groupDecrypt, () => reader0.E2e.OpenAsync(Frame("grp:1", owner, sealedPayload, reader0), reader0.Address.User, reader0.Address.Device));
            groupBytes += Encoding.UTF8.GetByteCount(sealedPayload.GetRawText());
        }

        report["group_encrypt_ms"] = Report.Percentiles(groupEncrypt);
        report["group_decrypt_ms"] = Report.Percentiles(groupDecrypt);
        report["group_e2ee_bytes"] = groupBytes / options.Messages;
        report["plain_body_json_bytes"] = Encoding.UTF8.GetByteCount(JsonSerializer.Serialize(body));
        Report.Print(report, options.Json);
        return 0;
    }
}
