using System.Diagnostics;
using System.Globalization;
using System.Text;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>direct</c> workload.</summary>
internal sealed record DirectOptions(BenchTarget Target, int Pairs, int Window, TimeSpan Duration, TimeSpan Warmup, int BodyBytes, bool Json, int Rate = 0, RecvPolicy Recv = default);

/// <summary>
/// 1:1 load on hot pairs: each pair is a sender and a receiver in one direct conversation. A sender keeps up to
/// <c>window</c> sends in flight (pipelined, persist-before-ack); a receiver acknowledges with cumulative recv,
/// per socket read or every N messages. (Many users and rarely touched conversations: <see cref="UsersBench"/>.)
/// Reports acked/s, ack latency and end-to-end latency percentiles, loss and duplicates.
/// </summary>
internal sealed class DirectBench(DirectOptions options)
{
    // A sender that waits this long past the end for room in its window has stalled (acks stopped coming).
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(10);
    private readonly LongHistogram _ack = Report.Histogram();
    private readonly LongHistogram _endToEnd = Report.Histogram();
    private long _acked;
    private long _ackedInWindow;
    private long _errors;
    private long _received;
    private long _duplicates;
    private long _stalled;
    private long _measureFrom;
    private long _measureTo = long.MaxValue;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var (report, ok) = await MeasureAsync(cancellationToken);
        Report.Print(report, options.Json);
        return ok ? 0 : 1;
    }

    /// <summary>
    /// Ramp: runs one measurement per offered rate, from <paramref name="from"/> up by <paramref name="step"/>, and
    /// reports the highest rate that was fully acked with nothing lost and end-to-end p99 within the bound.
    /// Stops at the first rate that misses (or at <paramref name="max"/>).
    /// </summary>
    public static async Task<int> RampAsync(DirectOptions options, int from, int step, int max, double p99BoundMs, CancellationToken cancellationToken)
    {
        var steps = new List<Dictionary<string, object?>>();
        var best = 0;
        for (var rate = from; rate <= max; rate += step)
        {
            var (report, ok) = await new DirectBench(options with { Rate = rate, Json = true }).MeasureAsync(cancellationToken);
            var p99 = ((Dictionary<string, double>)report["end_to_end_ms"]!)["p99"];
            var acked = Convert.ToDouble(report["acked_per_s"], System.Globalization.CultureInfo.InvariantCulture);
            var passed = ok && p99 <= p99BoundMs && acked >= rate * 0.98;
            steps.Add(new Dictionary<string, object?> { ["offered_per_s"] = rate, ["acked_per_s"] = acked, ["e2e_p99_ms"] = p99, ["passed"] = passed });
            if (!options.Json)
            {
                Console.Error.WriteLine($"ramp: {rate,8:N0}/s offered → {acked,8:N0}/s acked, e2e p99 {p99:0.###} ms {(passed ? "ok" : "over the bound")}");
            }

            if (!passed)
            {
                break;
            }

            best = rate;
        }

        Report.Print(new Dictionary<string, object?>
        {
            ["workload"] = "direct-ramp",
            ["pairs"] = options.Pairs,
            ["p99_bound_ms"] = p99BoundMs,
            ["highest_passing_per_s"] = best,
            ["steps"] = steps.Count,
        }, options.Json);
        return best > 0 ? 0 : 1;
    }

    private async Task<(Dictionary<string, object?> Report, bool Ok)> MeasureAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(60));
        var accounts = new BenchAccounts(http);
        var pairs = new List<Pair>();
        for (var i = 0; i < options.Pairs; i++)
        {
            // Each on the node of its socket (2i and 2i + 1): against a cluster, a pair's two ends are on different nodes.
            var sender = await accounts.CreateAsync("s", i, 2 * i, cancellationToken);
            var receiver = await accounts.CreateAsync("r", i, (2 * i) + 1, cancellationToken);
            pairs.Add(new Pair(this, i, Protocol.Names.DirectConversation(sender.User, receiver.User), options));
            await pairs[^1].ConnectAsync(options.Target, sender.Token, receiver.Token, cancellationToken);
        }

        var before = await BatchStats.ReadAsync(http, cancellationToken);
        var start = Stopwatch.GetTimestamp();
        _measureFrom = start + (long)(options.Warmup.TotalSeconds * Stopwatch.Frequency);
        var end = _measureFrom + (long)(options.Duration.TotalSeconds * Stopwatch.Frequency);
        _measureTo = end;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stop.CancelAfter(options.Warmup + options.Duration + StallTimeout);
        // With an offered rate, one thread sends on a schedule (open loop), spread evenly over the pairs: latency
        // then measures the path, not a queue the generator built itself. Without one, each window paces its sender.
        var senders = options.Rate > 0
            ? [Task.Factory.StartNew(() => SendOnSchedule(pairs, end, stop.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)]
            : pairs.Select(p => p.SendUntilAsync(end, stop.Token)).ToList();
        var progress = ProgressAsync(start, end, cancellationToken);
        await Task.WhenAll(senders);
        await progress;
        var after = await BatchStats.ReadAsync(http, cancellationToken);

        // Let the last acks and deliveries arrive (bounded), then count loss.
        var settle = Stopwatch.StartNew();
        while (settle.Elapsed < TimeSpan.FromSeconds(10) && (pairs.Any(p => p.InFlight > 0) || Interlocked.Read(ref _received) < Interlocked.Read(ref _acked)))
        {
            await Task.Delay(50, cancellationToken);
        }

        var sent = pairs.Sum(p => p.Sent);
        var lost = Math.Max(0, Interlocked.Read(ref _acked) - Interlocked.Read(ref _received));
        var seconds = options.Duration.TotalSeconds;
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "direct",
            ["pairs"] = options.Pairs,
            ["recv"] = options.Recv.ToString(),
            ["source_addresses"] = options.Target.SourceAddresses,
            ["window"] = options.Window,
            ["offered_per_s"] = options.Rate,
            ["body_bytes"] = options.BodyBytes,
            ["duration_s"] = seconds,
            ["sent"] = sent,
            ["acked"] = Interlocked.Read(ref _acked),
            ["errors"] = Interlocked.Read(ref _errors),
            ["acked_per_s"] = Math.Round(Interlocked.Read(ref _ackedInWindow) / seconds),
            ["ack_ms"] = Report.Percentiles(_ack),
            ["end_to_end_ms"] = Report.Percentiles(_endToEnd),
            ["received"] = Interlocked.Read(ref _received),
            ["lost"] = lost,
            ["duplicates"] = Interlocked.Read(ref _duplicates),
            ["stalled_senders"] = Interlocked.Read(ref _stalled),
        };
        if (before is not null && after is not null)
        {
            var (commits, mean, p50, p99) = BatchStats.Delta(before, after);
            report["group_commits"] = commits;
            report["batch_mean"] = Math.Round(mean, 1);
            report["batch_p50_bucket"] = p50;
            report["batch_p99_bucket"] = p99;
        }

        options.Target.AddTo(report);
        foreach (var pair in pairs)
        {
            await pair.DisposeAsync();
        }

        return (report, lost == 0 && Interlocked.Read(ref _errors) == 0 && Interlocked.Read(ref _duplicates) == 0 && Interlocked.Read(ref _stalled) == 0);
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

    private bool Measuring(long now) => now >= _measureFrom && now < _measureTo;

    /// <summary>Message k goes to pair k mod P at start + k / rate, on this thread; a full window counts as a stall.</summary>
    private void SendOnSchedule(List<Pair> pairs, long end, CancellationToken cancellationToken)
    {
        Pacer.PrepareThread();
        var start = Stopwatch.GetTimestamp();
        var perMessage = (double)Stopwatch.Frequency / options.Rate;
        try
        {
            for (long k = 0; ; k++)
            {
                var due = start + (long)(k * perMessage);
                if (due >= end)
                {
                    return;
                }

                Pacer.WaitUntil(due);
                pairs[(int)(k % pairs.Count)].SendNext(cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            Interlocked.Increment(ref _stalled);
        }
    }

    private sealed class Pair(DirectBench bench, int index, string conv, DirectOptions options) : IAsyncDisposable
    {
        private readonly Timestamps _sentAt = new();
        private readonly SemaphoreSlim _window = new(options.Window, options.Window);
        private readonly string _prefix = $"{index}-";
        private readonly string _body = new('x', options.BodyBytes);
        private readonly HashSet<long> _seen = [];
        private BenchConnection? _sender;
        private BenchConnection? _receiver;
        private long _sent;
        private long _lastRecv;
        private long _owedRecv;

        public long Sent => Interlocked.Read(ref _sent);
        public int InFlight => options.Window - _window.CurrentCount;

        public async Task ConnectAsync(BenchTarget target, string senderToken, string receiverToken, CancellationToken cancellationToken)
        {
            _receiver = await target.ConnectAsync(2 * index + 1, receiverToken, OnReceiverFrame, cancellationToken, onReadEnd: OnReceiverReadEnd);
            _sender = await target.ConnectAsync(2 * index, senderToken, OnSenderFrame, cancellationToken);
        }

        /// <summary>Sends until <paramref name="end"/>; the token fires when the window has been full for too long.</summary>
        public async Task SendUntilAsync(long end, CancellationToken cancellationToken)
        {
            try
            {
                for (long n = 0; Stopwatch.GetTimestamp() < end; n++)
                {
                    await _window.WaitAsync(cancellationToken);
                    var frame = Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"{_prefix}{n}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"{_body}\"}}");
                    _sentAt.Set(n, Stopwatch.GetTimestamp());
                    await _sender!.SendAsync(frame, cancellationToken);
                    Interlocked.Increment(ref _sent);
                }
            }
            catch (OperationCanceledException)
            {
                Interlocked.Increment(ref bench._stalled);
            }
        }

        private long _next;

        /// <summary>Sends the next message from the calling thread; blocks while the window is full.</summary>
        public void SendNext(CancellationToken cancellationToken)
        {
            _window.Wait(cancellationToken);
            var n = _next++;
            var frame = Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"{_prefix}{n}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"{_body}\"}}");
            _sentAt.Set(n, Stopwatch.GetTimestamp());
            var send = _sender!.SendAsync(frame, cancellationToken);
            if (!send.IsCompletedSuccessfully)
            {
                send.AsTask().GetAwaiter().GetResult();
            }

            Interlocked.Increment(ref _sent);
        }

        private long NumberOf(string? cid) =>
            cid is not null && cid.StartsWith(_prefix, StringComparison.Ordinal) && long.TryParse(cid.AsSpan(_prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1;

        private void OnSenderFrame(ReadOnlyMemory<byte> frame)
        {
            var now = Stopwatch.GetTimestamp();
            var type = BenchConnection.FrameType(frame.Span);
            if (type == "ack")
            {
                var n = NumberOf(BenchConnection.StringField(frame.Span, "cid"u8));
                if (n >= 0)
                {
                    var sentAt = _sentAt.Get(n);
                    Interlocked.Increment(ref bench._acked);
                    if (bench.Measuring(sentAt))
                    {
                        Interlocked.Increment(ref bench._ackedInWindow);
                        Report.Record(bench._ack, now - sentAt);
                    }
                }

                _window.Release();
            }
            else if (type == "error")
            {
                Interlocked.Increment(ref bench._errors);
                if (Interlocked.Read(ref bench._errors) <= 10)
                {
                    Console.Error.WriteLine(Encoding.UTF8.GetString(frame.Span)); // the first few say why; the count says how many
                }
                _window.Release();
            }
        }

        private void OnReceiverFrame(ReadOnlyMemory<byte> frame)
        {
            var now = Stopwatch.GetTimestamp();
            if (BenchConnection.FrameType(frame.Span) != "msg")
            {
                return;
            }

            var n = NumberOf(BenchConnection.StringField(frame.Span, "cid"u8));
            if (n < 0)
            {
                return;
            }

            lock (_seen)
            {
                if (!_seen.Add(n))
                {
                    Interlocked.Increment(ref bench._duplicates);
                    return;
                }
            }

            Interlocked.Increment(ref bench._received);
            var sentAt = _sentAt.Get(n);
            if (bench.Measuring(sentAt))
            {
                Report.Record(bench._endToEnd, now - sentAt);
            }

            var seq = BenchConnection.NumberField(frame.Span, "seq"u8) ?? 0;
            if (options.Recv.IsPerRead)
            {
                _owedRecv = Math.Max(_owedRecv, seq); // answered when the read's frames are all handled
            }
            else if (n - _lastRecv >= options.Recv.Every)
            {
                _lastRecv = n;
                SendRecv(seq);
            }
        }

        private void OnReceiverReadEnd()
        {
            if (_owedRecv > 0)
            {
                SendRecv(_owedRecv);
                _owedRecv = 0;
            }
        }

        private void SendRecv(long seq) =>
            _ = _receiver!.SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"recv\",\"conv\":\"{conv}\",\"seq\":{seq}}}"), CancellationToken.None).AsTask();

        public async ValueTask DisposeAsync()
        {
            if (_sender is not null)
            {
                await _sender.DisposeAsync();
            }

            if (_receiver is not null)
            {
                await _receiver.DisposeAsync();
            }

            _window.Dispose();
        }
    }
}
