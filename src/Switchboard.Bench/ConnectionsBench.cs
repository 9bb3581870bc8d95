using System.Diagnostics;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>connections</c> workload.</summary>
internal sealed record ConnectionsOptions(BenchTarget Target, int Clients, WatchedProcesses Servers, TimeSpan Hold, int Parallel, bool Json);

/// <summary>
/// Idle connections: how fast a node takes authenticated sockets and what each one costs it. Opens N sockets
/// (hello → welcome → live) with K connects in flight, reads the server's resident memory before and after, holds
/// them idle with a ping per heartbeat (as a phone in a pocket does), then closes them.
/// </summary>
internal sealed class ConnectionsBench(ConnectionsOptions options)
{
    private static readonly byte[] Ping = "{\"t\":\"ping\"}"u8.ToArray();

    // An idle socket only ever gets welcome, live and pong; the buffer grows if a bigger frame comes. Small, so
    // the load generator's own memory does not limit how many sockets it can hold.
    private const int ReceiveBufferBytes = 2 * 1024;

    // Lets the server finish what the sign-ups or the connects started (pooled buffers returned, a GC) before its
    // memory is read: 5 s, as an operator reading ps after a storm would.
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);

    // The pinger looks for due sockets this often, and pings a sweep early so no socket goes past its heartbeat.
    private static readonly TimeSpan PingSweep = TimeSpan.FromSeconds(1);

    // A sweep's pings that are not written by then count as failed (the server stopped reading).
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(10);

    private readonly LongHistogram _connect = Report.Histogram();
    private long _pings;
    private long _pongs;
    private long _pingFailures;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        if (options.Servers.FirstMissing() is { } pid)
        {
            await Console.Error.WriteLineAsync($"--server-pid {pid}: cannot read /proc/{pid}/status");
            return 2;
        }

        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken };
        var serverAtStart = options.Servers.RssBytes();
        Console.Error.WriteLine($"creating {options.Clients} accounts…");
        var accounts = new BenchAccounts(http);
        var tokens = new string[options.Clients];
        var signUpStart = Stopwatch.GetTimestamp();
        await Parallel.ForAsync(0, options.Clients, parallel, async (i, ct) => tokens[i] = (await accounts.CreateAsync("c", i, ct)).Token);
        var signUpSeconds = Stopwatch.GetElapsedTime(signUpStart).TotalSeconds;

        var serverBefore = await ReadServerRssAsync(cancellationToken);
        var clientBefore = ServerMetrics.RssBytes(Environment.ProcessId);
        var connections = new BenchConnection?[options.Clients];
        using var stopPinging = new CancellationTokenSource();
        var pinger = PingAsync(connections, stopPinging.Token);

        Console.Error.WriteLine($"opening {options.Clients} sockets over {options.Target.SourceAddresses} source address(es), {options.Parallel} at a time…");
        var overflowsBefore = KernelCounters.ListenOverflows();
        var first = Stopwatch.GetTimestamp();
        var lastLive = first;
        var failed = 0;
        string? firstError = null;
        using var stopOpening = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = stopOpening.Token }, async (i, ct) =>
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    connections[i] = await options.Target.ConnectAsync(i, tokens[i], OnFrame, ct, ReceiveBufferBytes);
                    var now = Stopwatch.GetTimestamp();
                    Report.Record(_connect, now - started);
                    long seen;
                    while ((seen = Interlocked.Read(ref lastLive)) < now && Interlocked.CompareExchange(ref lastLive, now, seen) != seen)
                    {
                    }
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    // Stop at the first failure: the run is failed anyway, and timeouts queued behind it would
                    // each wait out their own.
                    if (Interlocked.Increment(ref failed) == 1)
                    {
                        firstError = ex.GetBaseException().Message;
                        await stopOpening.CancelAsync();
                    }
                }
            });
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"stopped opening after a failure: {firstError}");
        }

        var overflows = KernelCounters.Delta(overflowsBefore, KernelCounters.ListenOverflows());
        var opened = connections.Count(c => c is not null);
        var openSeconds = Stopwatch.GetElapsedTime(first, lastLive).TotalSeconds;
        var serverAfter = await ReadServerRssAsync(cancellationToken);
        var clientAfter = ServerMetrics.RssBytes(Environment.ProcessId);
        var serverSockets = await ServerMetrics.ReadSumAsync(http, "switchboard_gateway_sockets", cancellationToken);
        var serverPerProcess = options.Servers.Pids.Count > 1 ? options.Servers.RssPerProcess(1) : null;

        Console.Error.WriteLine($"holding {opened} sockets for {options.Hold.TotalSeconds:0} s…");
        await Task.Delay(options.Hold, cancellationToken);
        var closedByServer = connections.Count(c => c is { IsClosed: true });
        await stopPinging.CancelAsync();
        await pinger;

        var closeStart = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(connections.OfType<BenchConnection>(), new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, (c, _) => c.DisposeAsync());
        var closeSeconds = Stopwatch.GetElapsedTime(closeStart).TotalSeconds;

        var report = new Dictionary<string, object?>
        {
            ["workload"] = "connections",
            ["clients"] = options.Clients,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["parallel"] = options.Parallel,
            ["sign_up_s"] = Math.Round(signUpSeconds, 2),
            ["opened"] = opened,
            ["failed"] = failed,
            ["not_tried"] = options.Clients - opened - failed,
        };
        if (firstError is not null)
        {
            report["first_error"] = firstError;
        }

        report["open_s"] = Math.Round(openSeconds, 2);
        report["connects_per_s"] = openSeconds > 0 ? Math.Round(opened / openSeconds) : 0;
        report["connect_ms"] = Report.Percentiles(_connect);
        if (options.Target.Url.IsLoopback)
        {
            report["listen_overflows"] = overflows;
        }

        report["server_sockets"] = serverSockets;
        if (serverBefore is { } before && serverAfter is { } after)
        {
            report["server_rss_start_bytes"] = serverAtStart;
            report["server_rss_before_bytes"] = before;
            report["server_rss_after_bytes"] = after;
            report["server_rss_per_connection_bytes"] = opened > 0 ? (after - before) / opened : 0;
            // What a user of ps sees: everything the run added since the server's start (sign-ups included) per socket.
            report["server_rss_per_connection_since_start_bytes"] = opened > 0 && serverAtStart is { } start ? (after - start) / opened : null;
            if (serverPerProcess is not null)
            {
                report["server_rss_after_bytes_per_pid"] = serverPerProcess;
            }
        }

        if (clientBefore is { } clientFrom && clientAfter is { } clientTo)
        {
            report["client_rss_per_connection_bytes"] = opened > 0 ? (clientTo - clientFrom) / opened : 0;
        }

        report["held_s"] = options.Hold.TotalSeconds;
        report["heartbeat_s"] = connections.FirstOrDefault(c => c is not null)?.HeartbeatSeconds;
        report["pings"] = Interlocked.Read(ref _pings);
        report["pongs"] = Interlocked.Read(ref _pongs);
        report["ping_failures"] = Interlocked.Read(ref _pingFailures);
        report["closed_by_server"] = closedByServer;
        report["close_s"] = Math.Round(closeSeconds, 2);
        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        return opened == options.Clients && closedByServer == 0 && Interlocked.Read(ref _pingFailures) == 0 ? 0 : 1;
    }

    private void OnFrame(ReadOnlyMemory<byte> frame)
    {
        if (BenchConnection.FrameType(frame.Span) == "pong")
        {
            Interlocked.Increment(ref _pongs);
        }
    }

    /// <summary>The servers' resident memory (summed over the nodes) after a settle, or null without <c>--server-pid</c>.</summary>
    private async Task<long?> ReadServerRssAsync(CancellationToken cancellationToken)
    {
        if (options.Servers.IsEmpty)
        {
            return null;
        }

        await Task.Delay(Settle, cancellationToken);
        return options.Servers.RssBytes();
    }

    /// <summary>
    /// One sweep a second over every open socket (no timer per socket): a socket whose last frame is a heartbeat
    /// old, less one sweep, gets a ping. Runs while sockets open too, since opening many can take longer than the
    /// three silent heartbeats after which the server closes a socket.
    /// </summary>
    private async Task PingAsync(BenchConnection?[] connections, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(PingSweep);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                var now = Environment.TickCount64;
                var sends = new List<Task>();
                foreach (var connection in connections)
                {
                    if (connection is { IsClosed: false } && now - connection.LastSentMs >= connection.HeartbeatSeconds * 1000L - (long)PingSweep.TotalMilliseconds)
                    {
                        // Not the stop token: cancelling a WebSocket send aborts the socket.
                        sends.Add(connection.SendAsync(Ping, CancellationToken.None).AsTask());
                    }
                }

                Interlocked.Add(ref _pings, sends.Count);
                try
                {
                    // Not the stop token either: a sweep finishes, so no ping is still being written when the sockets close.
                    await Task.WhenAll(sends).WaitAsync(PingTimeout, CancellationToken.None);
                }
                catch (Exception)
                {
                    Interlocked.Add(ref _pingFailures, sends.Count(t => !t.IsCompletedSuccessfully));
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopped
        }
    }
}
