using System.Diagnostics;
using System.Text;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>heartbeats</c> workload.</summary>
internal sealed record HeartbeatOptions(BenchTarget Target, int Clients, TimeSpan Duration, int Parallel, bool Json);

/// <summary>
/// Presence write load: many sockets, each sending <c>ping</c> as soon as its last <c>pong</c> came back. Every
/// ping is traffic that refreshes the user's presence TTL, so pings/s is the heartbeat rate one node absorbs.
/// </summary>
internal sealed class HeartbeatBench(HeartbeatOptions options)
{
    private static readonly byte[] Ping = Encoding.UTF8.GetBytes("{\"t\":\"ping\"}");

    // After the run, how long the last pings may take to be answered before they count as unanswered.
    private static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(5);
    private readonly LongHistogram _rtt = Report.Histogram();
    private long _pongs;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
        var accounts = new BenchAccounts(http);
        var tokens = new string[options.Clients];
        await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
            tokens[i] = (await accounts.CreateAsync("h", i, ct)).Token);

        var end = 0L;
        var connections = new BenchConnection[options.Clients];
        var sentAt = new long[options.Clients]; // 0 once the pong is back
        await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            connections[i] = await options.Target.ConnectAsync(i, tokens[i], frame =>
            {
                var now = Stopwatch.GetTimestamp();
                if (BenchConnection.FrameType(frame.Span) != "pong")
                {
                    return;
                }

                var pingedAt = Interlocked.Exchange(ref sentAt[i], 0);
                if (pingedAt == 0)
                {
                    return; // not ours: no ping of this client is outstanding
                }

                Interlocked.Increment(ref _pongs);
                Report.Record(_rtt, now - pingedAt);
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

        // Every client stops after the pong of its last ping; wait (bounded) for those last pongs.
        var settle = Stopwatch.StartNew();
        while (settle.Elapsed < SettleTimeout && Outstanding(sentAt) > 0)
        {
            await Task.Delay(50, cancellationToken);
        }

        var unanswered = Outstanding(sentAt);
        var closed = connections.Count(c => c.IsClosed);
        await Parallel.ForEachAsync(connections, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, (c, _) => c.DisposeAsync());

        var report = new Dictionary<string, object?>
        {
            ["workload"] = "heartbeats",
            ["clients"] = options.Clients,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["duration_s"] = Math.Round(seconds, 1),
            ["heartbeats"] = pongs,
            ["heartbeats_per_s"] = Math.Round(pongs / seconds),
            ["round_trip_ms"] = Report.Percentiles(_rtt),
            ["unanswered"] = unanswered,
            ["closed_by_server"] = closed,
        };
        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        return unanswered == 0 && closed == 0 ? 0 : 1;
    }

    private static int Outstanding(long[] sentAt)
    {
        var count = 0;
        for (var i = 0; i < sentAt.Length; i++)
        {
            count += Volatile.Read(ref sentAt[i]) != 0 ? 1 : 0;
        }

        return count;
    }
}
