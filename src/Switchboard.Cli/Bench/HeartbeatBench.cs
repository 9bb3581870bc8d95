using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Switchboard.Cli.Bench;

/// <summary>Settings of the <c>heartbeats</c> workload.</summary>
internal sealed record HeartbeatOptions(Uri Url, int Clients, TimeSpan Duration, int Parallel, bool Json);

/// <summary>
/// Presence write load: many sockets, each sending <c>ping</c> as soon as its last <c>pong</c> came back. Every
/// ping is traffic that refreshes the user's presence TTL, so pings/s is the heartbeat rate one node absorbs.
/// </summary>
internal sealed class HeartbeatBench(HeartbeatOptions options)
{
    private static readonly byte[] Ping = Encoding.UTF8.GetBytes("{\"t\":\"ping\"}");
    private readonly LongHistogram _rtt = new(TimeStamp.Seconds(60), 3);
    private long _pongs;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = options.Url, Timeout = TimeSpan.FromSeconds(120) };
        var ws = new Uri($"{(options.Url.Scheme == "https" ? "wss" : "ws")}://{options.Url.Authority}/v1/ws");
        var accounts = new BenchAccounts(http);
        var tokens = new string[options.Clients];
        await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
            tokens[i] = (await accounts.CreateAsync("h", i, ct)).Token);

        var end = 0L;
        var connections = new BenchConnection[options.Clients];
        var sentAt = new long[options.Clients];
        await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            connections[i] = await BenchConnection.ConnectAsync(ws, tokens[i], frame =>
            {
                var now = Stopwatch.GetTimestamp();
                if (BenchConnection.FrameType(frame.Span) != "pong")
                {
                    return;
                }

                Interlocked.Increment(ref _pongs);
                lock (_rtt)
                {
                    _rtt.RecordValue((now - Volatile.Read(ref sentAt[i])) * TimeSpan.TicksPerSecond / Stopwatch.Frequency);
                }

                if (now < Volatile.Read(ref end))
                {
                    Volatile.Write(ref sentAt[i], Stopwatch.GetTimestamp());
                    _ = connections[i].SendAsync(Ping, CancellationToken.None).AsTask();
                }
            }, ct, bufferSize: 4 * 1024);
        });

        var start = Stopwatch.GetTimestamp();
        Volatile.Write(ref end, start + (long)(options.Duration.TotalSeconds * Stopwatch.Frequency));
        for (var i = 0; i < options.Clients; i++)
        {
            Volatile.Write(ref sentAt[i], Stopwatch.GetTimestamp());
            await connections[i].SendAsync(Ping, cancellationToken);
        }

        await Task.Delay(options.Duration, cancellationToken);
        var pongs = Interlocked.Read(ref _pongs);
        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        await Task.Delay(500, cancellationToken);
        foreach (var connection in connections)
        {
            await connection.DisposeAsync();
        }

        var report = new Dictionary<string, object?>
        {
            ["workload"] = "heartbeats",
            ["clients"] = options.Clients,
            ["duration_s"] = Math.Round(seconds, 1),
            ["heartbeats"] = pongs,
            ["heartbeats_per_s"] = Math.Round(pongs / seconds),
            ["round_trip_ms"] = GroupBench.Percentiles(_rtt),
        };
        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, BenchJson.Default.DictionaryStringObject));
        }
        else
        {
            foreach (var (key, value) in report)
            {
                Console.WriteLine($"{key,-18} {(value is Dictionary<string, double> p ? string.Join("  ", p.Select(kv => $"{kv.Key} {kv.Value.ToString("0.###", CultureInfo.InvariantCulture)}")) : Convert.ToString(value, CultureInfo.InvariantCulture))}");
            }
        }

        return 0;
    }
}
