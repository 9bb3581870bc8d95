using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>login-flood</c> workload.</summary>
internal sealed record LoginFloodOptions(BenchTarget Target, int Attackers, bool RandomNames, TimeSpan Duration, double ConnectsPerSecond, WatchedProcesses Servers, bool Json);

/// <summary>
/// A wrong-password flood and the user it must not hurt. K attackers each post wrong-password logins back to back
/// (against one real account, or random names), ignoring every 429 as an attacker would, while a real user of the
/// same server opens a WebSocket with its token at a steady rate and closes it again. Reports that user's connect
/// latency, the attackers' answers, and the server's resident memory over the run.
/// </summary>
internal sealed class LoginFloodBench(LoginFloodOptions options)
{
    private readonly LongHistogram _connect = Report.Histogram();
    private readonly LongHistogram _attempt = Report.Histogram();
    private long _unauthorized;
    private long _limited;
    private long _other;
    private long _failed;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(60));
        var accounts = new BenchAccounts(http);
        var (victim, token) = await accounts.CreateAsync("v", 0, cancellationToken);
        await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken); // the sign-up's hash settles
        var rssStart = options.Servers.RssBytes();
        long rssMax = rssStart ?? 0;

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stop.CancelAfter(options.Duration);
        var started = Stopwatch.GetTimestamp();
        Console.Error.WriteLine($"{options.Attackers} attackers for {options.Duration.TotalSeconds:0} s against {(options.RandomNames ? "random names" : victim)}…");
        var attackers = Enumerable.Range(0, options.Attackers).Select(i => Task.Run(() => AttackAsync(i, victim, stop.Token), CancellationToken.None)).ToArray();

        var connects = 0;
        var connectFailures = 0;
        var interval = TimeSpan.FromSeconds(1 / options.ConnectsPerSecond);
        using (var timer = new PeriodicTimer(interval))
        {
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token))
                {
                    if (options.Servers.RssBytes() is { } rss)
                    {
                        rssMax = Math.Max(rssMax, rss);
                    }

                    var t0 = Stopwatch.GetTimestamp();
                    try
                    {
                        await using var connection = await options.Target.ConnectAsync(0, token, static _ => { }, stop.Token, 4096, TimeSpan.FromSeconds(30));
                        Report.Record(_connect, Stopwatch.GetTimestamp() - t0);
                        connects++;
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !stop.IsCancellationRequested)
                    {
                        connectFailures++;
                    }
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // the run is over
            }
        }

        await Task.WhenAll(attackers);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var rssEnd = options.Servers.RssBytes();
        var attempts = Interlocked.Read(ref _unauthorized) + Interlocked.Read(ref _limited) + Interlocked.Read(ref _other);
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "login-flood",
            ["attackers"] = options.Attackers,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["against"] = options.RandomNames ? "random names" : "one account",
            ["duration_s"] = Math.Round(seconds, 1),
            ["attempts"] = attempts,
            ["attempts_per_s"] = Math.Round(attempts / seconds),
            ["answered_401"] = Interlocked.Read(ref _unauthorized),
            ["answered_429"] = Interlocked.Read(ref _limited),
            ["answered_other"] = Interlocked.Read(ref _other),
            ["request_failures"] = Interlocked.Read(ref _failed),
            ["attempt_ms"] = Report.Percentiles(_attempt),
            ["user_connects"] = connects,
            ["user_connect_failures"] = connectFailures,
            ["user_connect_ms"] = Report.Percentiles(_connect),
        };
        if (rssStart is { } start)
        {
            report["server_rss_start_bytes"] = start;
            report["server_rss_max_bytes"] = rssMax;
            report["server_rss_end_bytes"] = rssEnd;
            report["server_rss_growth_max_bytes"] = rssMax - start;
            if (options.Servers.Pids.Count > 1)
            {
                report["server_rss_end_bytes_per_pid"] = options.Servers.RssPerProcess(1);
            }
        }

        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        return connectFailures == 0 ? 0 : 1;
    }

    private async Task AttackAsync(int index, string victim, CancellationToken stop)
    {
        // Each attacker its own connection, from its own loopback source address when --source-addresses spreads them.
        var local = options.Target.LocalAddress(index);
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    if (local is not null)
                    {
                        socket.Bind(new IPEndPoint(local, 0));
                    }

                    await socket.ConnectAsync(context.DnsEndPoint, ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        using var http = new HttpClient(handler) { BaseAddress = options.Target.UrlOf(index), Timeout = TimeSpan.FromSeconds(60) }; // spread like users
        var random = new Random(index);
        while (!stop.IsCancellationRequested)
        {
            var user = options.RandomNames ? $"nobody{random.Next():x8}" : victim;
            var t0 = Stopwatch.GetTimestamp();
            try
            {
                using var response = await http.PostAsJsonAsync("/v1/devices", new { user, password = "wrong password " + random.Next(), name = "guess" }, stop);
                Report.Record(_attempt, Stopwatch.GetTimestamp() - t0);
                _ = (int)response.StatusCode switch
                {
                    401 => Interlocked.Increment(ref _unauthorized),
                    429 => Interlocked.Increment(ref _limited),
                    _ => Interlocked.Increment(ref _other),
                };
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (HttpRequestException)
            {
                Interlocked.Increment(ref _failed);
            }
        }
    }
}
