using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>How a receiver acknowledges what it got: a cumulative recv per socket read (as the SDK does), or every N messages per conversation.</summary>
internal readonly record struct RecvPolicy(int Every)
{
    public static readonly RecvPolicy PerRead = new(0);

    public bool IsPerRead => Every == 0;

    public override string ToString() => IsPerRead ? "per-read" : $"every:{Every.ToString(CultureInfo.InvariantCulture)}";

    /// <summary><c>per-read</c> or <c>every:N</c>; null when it is neither.</summary>
    public static RecvPolicy? Parse(string? text)
    {
        if (text is null or "per-read")
        {
            return PerRead;
        }

        return text.StartsWith("every:", StringComparison.Ordinal) && int.TryParse(text.AsSpan(6), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1
            ? new RecvPolicy(n)
            : null;
    }
}

/// <summary>Settings of the <c>direct</c> workload with many users (the default).</summary>
/// <param name="Contacts">Contacts per user, picked at random; 0 means any other user, uniformly.</param>
/// <param name="Servers">The server processes (one per node) whose disk writes and memory are reported, or none.</param>
/// <param name="Stores">The store processes (with their descendants) whose disk writes are reported beside the servers', or none.</param>
internal sealed record UsersOptions(
    BenchTarget Target,
    int Users,
    int Contacts,
    RecvPolicy Recv,
    double ReadFraction,
    int Window,
    TimeSpan Duration,
    TimeSpan Warmup,
    int BodyBytes,
    int Rate,
    int Parallel,
    WatchedProcesses Servers,
    WatchedProcesses Stores,
    int Seed,
    bool Json);

/// <summary>
/// 1:1 load the way people make it: many users, one device each, each message from a random user to one of
/// their contacts (or to any other user), so most conversations are touched rarely. Every receiver answers the
/// way a client does: a cumulative <c>recv</c> per conversation for each socket read (or every N messages), and
/// a share of deliveries is also marked read. Reports acked/s, ack and end-to-end percentiles, loss, duplicates,
/// order violations, the server's batch sizes, and the bytes the server wrote to disk per message. Against a
/// cluster, users are spread over the nodes (see <see cref="BenchTarget"/>), so a message mostly crosses nodes; the
/// batch sizes and bytes written are then the nodes' added up, and the store's own writes can be counted too.
/// </summary>
internal sealed class UsersBench(UsersOptions options)
{
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(10);
    private readonly LongHistogram _ack = Report.Histogram();
    private readonly LongHistogram _endToEnd = Report.Histogram();
    private readonly Timestamps _sentAt = new();
    private readonly Flags _arrived = new();
    private User[] _users = [];
    private int[][]? _contacts;
    private long _sent;
    private long _crossNode;
    private long _acked;
    private long _ackedInWindow;
    private long _errors;
    private long _received;
    private long _duplicates;
    private long _outOfOrder;
    private long _stalled;
    private long _recvFrames;
    private long _readFrames;
    private long _measureFrom;
    private long _measureTo = long.MaxValue;

    private UsersOptions Settings => options;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        if (options.Servers.FirstMissing() is { } pid)
        {
            await Console.Error.WriteLineAsync($"--server-pid {pid}: cannot read /proc/{pid}/status");
            return 2;
        }

        if (options.Stores.FirstMissing() is { } storePid)
        {
            await Console.Error.WriteLineAsync($"--store-pid {storePid}: cannot read /proc/{storePid}/status");
            return 2;
        }

        var (report, ok) = await MeasureAsync(cancellationToken);
        Report.Print(report, options.Json);
        return ok ? 0 : 1;
    }

    /// <summary>One measurement per offered rate, up by <paramref name="step"/>, until one misses the p99 bound or loses anything.</summary>
    public static async Task<int> RampAsync(UsersOptions options, int from, int step, int max, double p99BoundMs, CancellationToken cancellationToken)
    {
        var best = 0;
        var steps = 0;
        for (var rate = from; rate <= max; rate += step)
        {
            var (report, ok) = await new UsersBench(options with { Rate = rate, Json = true }).MeasureAsync(cancellationToken);
            steps++;
            var p99 = ((Dictionary<string, double>)report["end_to_end_ms"]!)["p99"];
            var acked = Convert.ToDouble(report["acked_per_s"], CultureInfo.InvariantCulture);
            var passed = ok && p99 <= p99BoundMs && acked >= rate * 0.98;
            if (!options.Json)
            {
                var store = report.TryGetValue("store_bytes_per_msg", out var storeBytes) ? $" + {storeBytes} B/msg by the store" : "";
                Console.Error.WriteLine($"ramp: {rate,8:N0}/s offered → {acked,8:N0}/s acked, e2e p99 {p99:0.###} ms, {report["disk_bytes_per_msg"] ?? "-"} B/msg written{store} {(passed ? "ok" : "over the bound")}");
            }

            if (!passed)
            {
                break;
            }

            best = rate;
        }

        Report.Print(new Dictionary<string, object?>
        {
            ["workload"] = "direct-users-ramp",
            ["users"] = options.Users,
            ["contacts"] = options.Contacts == 0 ? "all" : options.Contacts.ToString(CultureInfo.InvariantCulture),
            ["recv"] = options.Recv.ToString(),
            ["p99_bound_ms"] = p99BoundMs,
            ["highest_passing_per_s"] = best,
            ["steps"] = steps,
        }, options.Json);
        return best > 0 ? 0 : 1;
    }

    private async Task<(Dictionary<string, object?> Report, bool Ok)> MeasureAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
        var random = new Random(options.Seed);
        var accounts = new BenchAccounts(http);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken };
        if (!options.Json)
        {
            Console.Error.WriteLine($"creating {options.Users} accounts…");
        }

        var created = new (string User, string Token)[options.Users];
        await Parallel.ForAsync(0, options.Users, parallel, async (i, ct) => created[i] = await accounts.CreateAsync("u", i, ct));
        _contacts = options.Contacts == 0 ? null : PickContacts(random, options.Users, Math.Min(options.Contacts, options.Users - 1));
        _users = new User[options.Users];
        for (var i = 0; i < options.Users; i++)
        {
            _users[i] = new User(this, i, created[i].User);
        }

        if (!options.Json)
        {
            Console.Error.WriteLine($"connecting {options.Users} sockets…");
        }

        await Parallel.ForAsync(0, options.Users, parallel, async (i, ct) => await _users[i].ConnectAsync(options.Target, created[i].Token, ct));

        var before = await BatchStats.ReadAsync(http, cancellationToken);
        var start = Stopwatch.GetTimestamp();
        _measureFrom = start + (long)(options.Warmup.TotalSeconds * Stopwatch.Frequency);
        var end = _measureFrom + (long)(options.Duration.TotalSeconds * Stopwatch.Frequency);
        _measureTo = end;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stop.CancelAfter(options.Warmup + options.Duration + StallTimeout);

        // The disk and memory readings bracket the measured window, not the warm-up.
        var disk = new DiskReading(options.Servers, options.Stores, http);
        var measuring = Task.Run(async () =>
        {
            await Task.Delay(options.Warmup, cancellationToken);
            await disk.StartAsync(cancellationToken);
            await Task.Delay(options.Duration, cancellationToken);
            await disk.StopAsync(cancellationToken);
        }, cancellationToken);
        var sender = Task.Factory.StartNew(() => SendLoop(random, end, stop.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var progress = ProgressAsync(start, end, cancellationToken);
        await sender;
        await measuring;
        await progress;
        var after = await BatchStats.ReadAsync(http, cancellationToken);

        var settle = Stopwatch.StartNew();
        while (settle.Elapsed < TimeSpan.FromSeconds(10) && (_users.Any(u => u.InFlight > 0) || Interlocked.Read(ref _received) < Interlocked.Read(ref _acked)))
        {
            await Task.Delay(50, cancellationToken);
        }

        var lost = Math.Max(0, Interlocked.Read(ref _acked) - Interlocked.Read(ref _received));
        var seconds = options.Duration.TotalSeconds;
        var inWindow = Interlocked.Read(ref _ackedInWindow);
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "direct-users",
            ["users"] = options.Users,
            ["contacts"] = options.Contacts == 0 ? "all" : options.Contacts.ToString(CultureInfo.InvariantCulture),
            ["recv"] = options.Recv.ToString(),
            ["read_fraction"] = options.ReadFraction,
            ["window"] = options.Window,
            ["offered_per_s"] = options.Rate,
            ["body_bytes"] = options.BodyBytes,
            ["duration_s"] = seconds,
            ["sent"] = Interlocked.Read(ref _sent),
            ["acked"] = Interlocked.Read(ref _acked),
            ["errors"] = Interlocked.Read(ref _errors),
            ["acked_per_s"] = Math.Round(inWindow / seconds),
            ["ack_ms"] = Report.Percentiles(_ack),
            ["end_to_end_ms"] = Report.Percentiles(_endToEnd),
            ["received"] = Interlocked.Read(ref _received),
            ["lost"] = lost,
            ["duplicates"] = Interlocked.Read(ref _duplicates),
            ["out_of_order"] = Interlocked.Read(ref _outOfOrder),
            ["stalled"] = Interlocked.Read(ref _stalled),
            ["recv_frames"] = Interlocked.Read(ref _recvFrames),
            ["read_frames"] = Interlocked.Read(ref _readFrames),
            ["conversations_touched"] = _users.Sum(u => u.Conversations),
        };
        if (before is not null && after is not null)
        {
            var (commits, mean, p50, p99) = BatchStats.Delta(before, after);
            report["group_commits"] = commits;
            report["batch_mean"] = Math.Round(mean, 1);
            report["batch_p50_bucket"] = p50;
            report["batch_p99_bucket"] = p99;
        }

        disk.AddTo(report, inWindow);
        if (options.Servers.RssBytes() is { } rss)
        {
            report["server_rss_mb"] = Math.Round(rss / 1048576.0, 1);
            if (options.Servers.Pids.Count > 1)
            {
                report["server_rss_mb_per_pid"] = options.Servers.RssPerProcess(1048576.0);
            }
        }

        options.Target.AddTo(report);
        if (options.Target.Nodes > 1)
        {
            report["cross_node_sends"] = Interlocked.Read(ref _crossNode);
        }

        await Parallel.ForEachAsync(_users, cancellationToken, async (u, _) => await u.DisposeAsync());
        var ok = lost == 0 && Interlocked.Read(ref _errors) == 0 && Interlocked.Read(ref _duplicates) == 0
            && Interlocked.Read(ref _outOfOrder) == 0 && Interlocked.Read(ref _stalled) == 0;
        return (report, ok);
    }

    /// <summary>Each user gets K distinct contacts other than themselves, picked uniformly.</summary>
    private static int[][] PickContacts(Random random, int users, int k)
    {
        var contacts = new int[users][];
        for (var u = 0; u < users; u++)
        {
            var picked = new HashSet<int>();
            while (picked.Count < k)
            {
                var c = random.Next(users);
                if (c != u)
                {
                    picked.Add(c);
                }
            }

            contacts[u] = [.. picked];
        }

        return contacts;
    }

    /// <summary>
    /// Message k goes from a random user to one of their contacts, at start + k / rate (open loop) or as fast as the
    /// senders' windows allow (closed loop). One thread; a full window makes it wait, which is counted as a stall
    /// when it lasts past the end.
    /// </summary>
    private void SendLoop(Random random, long end, CancellationToken cancellationToken)
    {
        Pacer.PrepareThread();
        var start = Stopwatch.GetTimestamp();
        var perMessage = options.Rate > 0 ? (double)Stopwatch.Frequency / options.Rate : 0;
        var body = new string('x', options.BodyBytes);
        try
        {
            for (long k = 0; ; k++)
            {
                if (perMessage > 0)
                {
                    var due = start + (long)(k * perMessage);
                    if (due >= end)
                    {
                        return;
                    }

                    Pacer.WaitUntil(due);
                }
                else if (Stopwatch.GetTimestamp() >= end)
                {
                    return;
                }

                var from = random.Next(_users.Length);
                int to;
                if (_contacts is { } contacts)
                {
                    to = contacts[from][random.Next(contacts[from].Length)];
                }
                else
                {
                    to = random.Next(_users.Length - 1);
                    to += to >= from ? 1 : 0;
                }

                _users[from].Send(k, Protocol.Names.DirectConversation(_users[from].Name, _users[to].Name), body, cancellationToken);
                Interlocked.Increment(ref _sent);
                if (options.Target.NodeOf(from) != options.Target.NodeOf(to))
                {
                    Interlocked.Increment(ref _crossNode);
                }
            }
        }
        catch (OperationCanceledException)
        {
            Interlocked.Increment(ref _stalled);
        }
    }

    private async Task ProgressAsync(long start, long end, CancellationToken cancellationToken)
    {
        if (options.Json || Console.IsErrorRedirected)
        {
            return;
        }

        var last = 0L;
        while (Stopwatch.GetTimestamp() < end)
        {
            await Task.Delay(1000, cancellationToken);
            var acked = Interlocked.Read(ref _acked);
            Console.Error.Write($"\r{Stopwatch.GetElapsedTime(start).TotalSeconds,5:F0} s  acked {acked,10:N0}  ({acked - last,8:N0}/s)  received {Interlocked.Read(ref _received),10:N0}   ");
            last = acked;
        }

        Console.Error.WriteLine();
    }

    private bool Measuring(long sentAt) => sentAt >= _measureFrom && sentAt < _measureTo;

    private static long NumberOf(string? cid) =>
        cid is not null && long.TryParse(cid, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1;

    /// <summary>One user with one device: sends what the loop gives it, receives, and answers each read with receipts.</summary>
    private sealed class User(UsersBench bench, int index, string name) : IAsyncDisposable
    {
        private readonly SemaphoreSlim _window = new(bench.Settings.Window, bench.Settings.Window);
        private readonly Random _readDice = new(bench.Settings.Seed ^ (index * 7919));

        // Touched only by this socket's receive loop: the highest seq per conversation seen, and what this read owes.
        // Keyed by a hash of the conversation, not its name: an entry then holds no reference, so the generator's own
        // garbage collections stay short (string keys for up to a million conversations paused it for 10 ms).
        private readonly Dictionary<ulong, long> _lastSeq = [];
        private readonly Dictionary<string, (long Recv, long Read)> _owed = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> _sinceRecv = new(StringComparer.Ordinal);
        private BenchConnection? _connection;

        public string Name { get; } = name;

        public int InFlight => bench.Settings.Window - _window.CurrentCount;

        public int Conversations => _lastSeq.Count;

        public async Task ConnectAsync(BenchTarget target, string token, CancellationToken cancellationToken) =>
            _connection = await target.ConnectAsync(index, token, OnFrame, cancellationToken, bufferSize: 64 * 1024, onReadEnd: OnReadEnd);

        public void Send(long k, string conv, string body, CancellationToken cancellationToken)
        {
            _window.Wait(cancellationToken);
            var frame = FrameText.Send(k, conv, body);
            bench._sentAt.Set(k, Stopwatch.GetTimestamp());
            var send = _connection!.SendAsync(frame, cancellationToken); // copied (masked) before it returns
            if (!send.IsCompletedSuccessfully)
            {
                send.AsTask().GetAwaiter().GetResult();
            }
        }

        private void OnFrame(ReadOnlyMemory<byte> frame)
        {
            var now = Stopwatch.GetTimestamp();
            var fields = FrameText.Read(frame.Span);
            switch (fields.Type)
            {
                case "ack":
                {
                    var k = fields.Cid;
                    if (k >= 0)
                    {
                        var sentAt = bench._sentAt.Get(k);
                        Interlocked.Increment(ref bench._acked);
                        if (bench.Measuring(sentAt))
                        {
                            Interlocked.Increment(ref bench._ackedInWindow);
                            Report.Record(bench._ack, now - sentAt);
                        }

                        _window.Release();
                    }

                    break;
                }

                case "error":
                    if (Interlocked.Increment(ref bench._errors) <= 10)
                    {
                        Console.Error.WriteLine(Encoding.UTF8.GetString(frame.Span));
                    }

                    if (BenchConnection.StringField(frame.Span, "ref"u8) is { } reference && NumberOf(reference) >= 0)
                    {
                        _window.Release();
                    }

                    break;
                case "msg":
                    Received(fields, now);
                    break;
            }
        }

        private void Received(FrameText.Fields fields, long now)
        {
            var k = fields.Cid;
            var conv = fields.Conv;
            var seq = fields.Seq;
            if (k < 0 || conv is null)
            {
                return;
            }

            if (!bench._arrived.Set(k))
            {
                Interlocked.Increment(ref bench._duplicates);
                return;
            }

            Interlocked.Increment(ref bench._received);
            var sentAt = bench._sentAt.Get(k);
            if (bench.Measuring(sentAt))
            {
                Report.Record(bench._endToEnd, now - sentAt);
            }

            var convKey = XxHash3.HashToUInt64(MemoryMarshal.AsBytes(conv.AsSpan()));
            if (_lastSeq.TryGetValue(convKey, out var last) && seq <= last)
            {
                Interlocked.Increment(ref bench._outOfOrder);
            }

            _lastSeq[convKey] = Math.Max(seq, last);
            var read = bench.Settings.ReadFraction > 0 && _readDice.NextDouble() < bench.Settings.ReadFraction;
            var owed = _owed.GetValueOrDefault(conv);
            var recvDue = bench.Settings.Recv.IsPerRead;
            if (!recvDue)
            {
                var count = _sinceRecv.GetValueOrDefault(conv) + 1;
                recvDue = count >= bench.Settings.Recv.Every;
                _sinceRecv[conv] = recvDue ? 0 : count;
            }

            if (recvDue || read)
            {
                _owed[conv] = (recvDue ? Math.Max(owed.Recv, seq) : owed.Recv, read ? Math.Max(owed.Read, seq) : owed.Read);
            }
        }

        /// <summary>The end of a socket read: one cumulative recv (and read) per conversation it brought.</summary>
        private void OnReadEnd()
        {
            if (_owed.Count == 0)
            {
                return;
            }

            foreach (var (conv, (recv, read)) in _owed)
            {
                if (recv > 0)
                {
                    Interlocked.Increment(ref bench._recvFrames);
                    Forget(_connection!.SendAsync(FrameText.Cursor("recv"u8, conv, recv), CancellationToken.None));
                }

                if (read > 0)
                {
                    Interlocked.Increment(ref bench._readFrames);
                    Forget(_connection!.SendAsync(FrameText.Cursor("read"u8, conv, read), CancellationToken.None));
                }
            }

            _owed.Clear();
        }

        /// <summary>A send not waited for: done at once unless the socket is full, then left to finish.</summary>
        private static void Forget(ValueTask send)
        {
            if (!send.IsCompletedSuccessfully)
            {
                _ = send.AsTask();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }

            _window.Dispose();
        }
    }

    /// <summary>
    /// Bytes written to disk over the measured window: by the servers, from /proc/PID/io (else the nodes' own metric,
    /// added up), and, given store processes, by those and their descendants.
    /// </summary>
    private sealed class DiskReading(WatchedProcesses servers, WatchedProcesses stores, NodeClients nodes)
    {
        private long? _before;
        private long? _after;
        private long? _storeBefore;
        private long? _storeAfter;
        private string _source = "";

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            _before = await ReadAsync(cancellationToken);
            _storeBefore = stores.DiskWriteBytes();
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            _after = await ReadAsync(cancellationToken);
            _storeAfter = stores.DiskWriteBytes();
        }

        private async Task<long?> ReadAsync(CancellationToken cancellationToken)
        {
            if (servers.DiskWriteBytes() is { } bytes)
            {
                _source = servers.Pids.Count == 1 ? $"/proc/{servers.Pids[0]}/io" : $"/proc/{{{string.Join(',', servers.Pids)}}}/io";
                return bytes;
            }

            _source = nodes.All.Count == 1 ? "metric" : $"metric, {nodes.All.Count} nodes";
            return (long?)await ServerMetrics.ReadSumAsync(nodes, "switchboard_process_disk_write_bytes", cancellationToken);
        }

        public void AddTo(Dictionary<string, object?> report, long messages)
        {
            if (_before is { } b && _after is { } a && messages > 0)
            {
                report["disk_written_mb"] = Math.Round((a - b) / 1048576.0, 1);
                report["disk_bytes_per_msg"] = Math.Round((double)(a - b) / messages);
                report["disk_source"] = _source;
            }

            if (_storeBefore is { } sb && _storeAfter is { } sa && messages > 0)
            {
                report["store_written_mb"] = Math.Round((sa - sb) / 1048576.0, 1);
                report["store_bytes_per_msg"] = Math.Round((double)(sa - sb) / messages);
                report["store_processes"] = stores.LastCount;
                if (_before is { } b2 && _after is { } a2)
                {
                    report["total_bytes_per_msg"] = Math.Round((double)(a2 - b2 + sa - sb) / messages);
                }
            }
            else if (!stores.IsEmpty)
            {
                report["store_bytes_per_msg"] = null; // given, but its /proc/PID/io could not be read (another user's process?)
            }
        }
    }

    /// <summary>
    /// The generator's frames, written and read without building strings or documents: it shares the machine with
    /// the server, so what it spends per message is taken from the server's share.
    /// </summary>
    private static class FrameText
    {
        [ThreadStatic]
        private static byte[]? _buffer;

        /// <summary>A send frame in a buffer of this thread's, valid until the next call on it.</summary>
        public static ReadOnlyMemory<byte> Send(long k, string conv, string body)
        {
            var buffer = Buffer(64 + conv.Length + (body.Length * 3));
            var w = 0;
            Append(buffer, ref w, "{\"t\":\"send\",\"cid\":\""u8);
            k.TryFormat(buffer.AsSpan(w), out var n, default, CultureInfo.InvariantCulture);
            w += n;
            Append(buffer, ref w, "\",\"conv\":\""u8);
            w += Encoding.UTF8.GetBytes(conv, buffer.AsSpan(w));
            Append(buffer, ref w, "\",\"kind\":\"text\",\"body\":\""u8);
            w += Encoding.UTF8.GetBytes(body, buffer.AsSpan(w));
            Append(buffer, ref w, "\"}"u8);
            return buffer.AsMemory(0, w);
        }

        /// <summary>A recv or read frame in a buffer of this thread's, valid until the next call on it.</summary>
        public static ReadOnlyMemory<byte> Cursor(ReadOnlySpan<byte> type, string conv, long seq)
        {
            var buffer = Buffer(64 + conv.Length);
            var w = 0;
            Append(buffer, ref w, "{\"t\":\""u8);
            Append(buffer, ref w, type);
            Append(buffer, ref w, "\",\"conv\":\""u8);
            w += Encoding.UTF8.GetBytes(conv, buffer.AsSpan(w));
            Append(buffer, ref w, "\",\"seq\":"u8);
            seq.TryFormat(buffer.AsSpan(w), out var n, default, CultureInfo.InvariantCulture);
            w += n;
            Append(buffer, ref w, "}"u8);
            return buffer.AsMemory(0, w);
        }

        private static byte[] Buffer(int size) => _buffer is { } b && b.Length >= size ? b : _buffer = new byte[Math.Max(size, 1024)];

        private static void Append(byte[] buffer, ref int at, ReadOnlySpan<byte> bytes)
        {
            bytes.CopyTo(buffer.AsSpan(at));
            at += bytes.Length;
        }

        /// <summary>What the generator needs of a server frame, in one pass.</summary>
        public readonly record struct Fields(string? Type, string? Conv, long Seq, long Cid);

        public static Fields Read(ReadOnlySpan<byte> json)
        {
            string? type = null, conv = null;
            long seq = 0, cid = -1;
            var reader = new System.Text.Json.Utf8JsonReader(json);
            try
            {
                if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
                {
                    return default;
                }

                while (reader.Read() && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName)
                {
                    if (reader.ValueTextEquals("t"u8))
                    {
                        reader.Read();
                        type = reader.ValueTextEquals("msg"u8) ? "msg" : reader.ValueTextEquals("ack"u8) ? "ack" : reader.GetString();
                    }
                    else if (reader.ValueTextEquals("conv"u8))
                    {
                        reader.Read();
                        conv = reader.GetString();
                    }
                    else if (reader.ValueTextEquals("seq"u8))
                    {
                        reader.Read();
                        seq = reader.TryGetInt64(out var s) ? s : 0;
                    }
                    else if (reader.ValueTextEquals("cid"u8))
                    {
                        reader.Read();
                        cid = reader.TokenType == System.Text.Json.JsonTokenType.String
                            && System.Buffers.Text.Utf8Parser.TryParse(reader.ValueSpan, out long c, out var used) && used == reader.ValueSpan.Length ? c : -1;
                    }
                    else
                    {
                        reader.Read();
                        reader.Skip();
                    }
                }
            }
            catch (System.Text.Json.JsonException)
            {
                return default;
            }

            return new Fields(type, conv, seq, cid);
        }
    }

    /// <summary>One flag per message number, set once; chunked like <see cref="Timestamps"/>.</summary>
    private sealed class Flags
    {
        private const int ChunkBits = 16;
        private readonly List<int[]> _chunks = [];
        private readonly Lock _grow = new();

        /// <summary>Sets the flag; false when it was set already.</summary>
        public bool Set(long n)
        {
            var chunk = (int)(n >> ChunkBits);
            int[] array;
            lock (_grow)
            {
                while (_chunks.Count <= chunk)
                {
                    _chunks.Add(new int[1 << ChunkBits]);
                }

                array = _chunks[chunk];
            }

            return Interlocked.Exchange(ref array[n & ((1 << ChunkBits) - 1)], 1) == 0;
        }
    }
}
