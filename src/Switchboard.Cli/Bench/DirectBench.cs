using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Switchboard.Cli.Bench;

/// <summary>Settings of the <c>direct</c> workload.</summary>
internal sealed record DirectOptions(Uri Url, int Pairs, int Window, TimeSpan Duration, TimeSpan Warmup, int BodyBytes, bool Json);

/// <summary>
/// 1:1 load: each pair is a sender and a receiver in one direct conversation. A sender keeps up to
/// <c>window</c> sends in flight (pipelined, persist-before-ack); a receiver acknowledges with cumulative recv.
/// Reports acked/s, ack latency and end-to-end latency percentiles, loss and duplicates.
/// </summary>
internal sealed class DirectBench(DirectOptions options)
{
    private readonly LongHistogram _ack = new(TimeStamp.Seconds(60), 3);
    private readonly LongHistogram _endToEnd = new(TimeStamp.Seconds(60), 3);
    private long _acked;
    private long _ackedInWindow;
    private long _errors;
    private long _received;
    private long _duplicates;
    private long _measureFrom;
    private long _measureTo = long.MaxValue;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = options.Url, Timeout = TimeSpan.FromSeconds(60) };
        var ws = new Uri($"{(options.Url.Scheme == "https" ? "wss" : "ws")}://{options.Url.Authority}/v1/ws");
        var accounts = new BenchAccounts(http);
        var pairs = new List<Pair>();
        for (var i = 0; i < options.Pairs; i++)
        {
            var sender = await accounts.CreateAsync("s", i, cancellationToken);
            var receiver = await accounts.CreateAsync("r", i, cancellationToken);
            pairs.Add(new Pair(this, i, Protocol.Names.DirectConversation(sender.User, receiver.User), options));
            await pairs[^1].ConnectAsync(ws, sender.Token, receiver.Token, cancellationToken);
        }

        var before = await BatchStats.ReadAsync(http, cancellationToken);
        var start = Stopwatch.GetTimestamp();
        _measureFrom = start + (long)(options.Warmup.TotalSeconds * Stopwatch.Frequency);
        var end = _measureFrom + (long)(options.Duration.TotalSeconds * Stopwatch.Frequency);
        _measureTo = end;
        var senders = pairs.Select(p => p.SendUntilAsync(end, cancellationToken)).ToList();
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
            ["window"] = options.Window,
            ["body_bytes"] = options.BodyBytes,
            ["duration_s"] = seconds,
            ["sent"] = sent,
            ["acked"] = Interlocked.Read(ref _acked),
            ["errors"] = Interlocked.Read(ref _errors),
            ["acked_per_s"] = Math.Round(Interlocked.Read(ref _ackedInWindow) / seconds),
            ["ack_ms"] = Percentiles(_ack),
            ["end_to_end_ms"] = Percentiles(_endToEnd),
            ["received"] = Interlocked.Read(ref _received),
            ["lost"] = lost,
            ["duplicates"] = Interlocked.Read(ref _duplicates),
        };
        if (before is not null && after is not null)
        {
            var (commits, mean, p50, p99) = BatchStats.Delta(before, after);
            report["group_commits"] = commits;
            report["batch_mean"] = Math.Round(mean, 1);
            report["batch_p50_bucket"] = p50;
            report["batch_p99_bucket"] = p99;
        }

        foreach (var pair in pairs)
        {
            await pair.DisposeAsync();
        }

        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, BenchJson.Default.DictionaryStringObject));
        }
        else
        {
            Print(report);
        }

        return lost == 0 && Interlocked.Read(ref _errors) == 0 ? 0 : 1;
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

    private static Dictionary<string, double> Percentiles(LongHistogram histogram)
    {
        double Ms(double percentile) => Math.Round(histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile) / (double)TimeSpan.TicksPerMillisecond, 3);
        return new Dictionary<string, double>
        {
            ["p50"] = Ms(50),
            ["p99"] = Ms(99),
            ["p999"] = Ms(99.9),
            ["max"] = Ms(100),
        };
    }

    private static void Print(Dictionary<string, object?> report)
    {
        foreach (var (key, value) in report)
        {
            var text = value switch
            {
                Dictionary<string, double> p => string.Join("  ", p.Select(kv => $"{kv.Key} {kv.Value.ToString("0.###", CultureInfo.InvariantCulture)}")),
                double d => d.ToString("N1", CultureInfo.InvariantCulture),
                long l => l.ToString("N0", CultureInfo.InvariantCulture),
                _ => Convert.ToString(value, CultureInfo.InvariantCulture),
            };
            Console.WriteLine($"{key,-18} {text}");
        }
    }

    private bool Measuring(long now) => now >= _measureFrom && now < _measureTo;

    /// <summary>Stopwatch ticks to HdrHistogram's TimeSpan ticks.</summary>
    private static long Ticks(long stopwatchTicks) => stopwatchTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency;

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

        public long Sent => Interlocked.Read(ref _sent);
        public int InFlight => options.Window - _window.CurrentCount;

        public async Task ConnectAsync(Uri ws, string senderToken, string receiverToken, CancellationToken cancellationToken)
        {
            _receiver = await BenchConnection.ConnectAsync(ws, receiverToken, OnReceiverFrame, cancellationToken);
            _sender = await BenchConnection.ConnectAsync(ws, senderToken, OnSenderFrame, cancellationToken);
        }

        public async Task SendUntilAsync(long end, CancellationToken cancellationToken)
        {
            for (long n = 0; Stopwatch.GetTimestamp() < end && !cancellationToken.IsCancellationRequested; n++)
            {
                await _window.WaitAsync(cancellationToken);
                var frame = Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"{_prefix}{n}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"{_body}\"}}");
                _sentAt.Set(n, Stopwatch.GetTimestamp());
                await _sender!.SendAsync(frame, cancellationToken);
                Interlocked.Increment(ref _sent);
            }
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
                        lock (bench._ack)
                        {
                            bench._ack.RecordValue(Ticks(now - sentAt));
                        }
                    }
                }

                _window.Release();
            }
            else if (type == "error")
            {
                Interlocked.Increment(ref bench._errors);
                Console.Error.WriteLine(Encoding.UTF8.GetString(frame.Span));
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
                lock (bench._endToEnd)
                {
                    bench._endToEnd.RecordValue(Ticks(now - sentAt));
                }
            }

            // Cumulative recv every 100 messages, as a real client would batch it.
            if (n - _lastRecv >= 100)
            {
                _lastRecv = n;
                var seq = SeqOf(frame.Span);
                _ = _receiver!.SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"recv\",\"conv\":\"{conv}\",\"seq\":{seq}}}"), CancellationToken.None).AsTask();
            }
        }

        private static long SeqOf(ReadOnlySpan<byte> json)
        {
            var reader = new Utf8JsonReader(json);
            reader.Read();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var match = reader.ValueTextEquals("seq"u8);
                reader.Read();
                if (match)
                {
                    return reader.GetInt64();
                }

                reader.Skip();
            }

            return 0;
        }

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

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object?>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, double>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long))]
[System.Text.Json.Serialization.JsonSerializable(typeof(int))]
[System.Text.Json.Serialization.JsonSerializable(typeof(double))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
[System.Text.Json.Serialization.JsonSerializable(typeof(bool))]
internal sealed partial class BenchJson : System.Text.Json.Serialization.JsonSerializerContext;
