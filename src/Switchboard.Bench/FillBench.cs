using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>fill</c> workload.</summary>
internal sealed record FillOptions(BenchTarget Target, int Users, int Conversations, int Senders, int Rate, int Window, int Parallel, WatchedProcesses Servers, bool Json);

/// <summary>
/// What a server holds once it has seen many users and conversations: signs up <c>users</c> accounts, connects
/// <c>senders</c> of them, and has each sender open conversations with distinct other users (one message each, so
/// every message starts a conversation) until <c>conversations</c> exist. Then reports the server's resident memory,
/// the store's memory and files, and how many entries its caches hold, so what a million conversations and a
/// hundred thousand users cost can be read off one run. Against a cluster, user i signs up on node i mod N and the
/// memory and cache figures are the nodes' added up.
/// </summary>
internal sealed class FillBench(FillOptions options)
{
    private const string Password = "bench password";

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
        var run = Guid.NewGuid().ToString("N")[..6];
        string Name(int i) => $"f{run}u{i.ToString(CultureInfo.InvariantCulture)}";
        var rssAtStart = options.Servers.RssBytes();

        Console.Error.WriteLine($"signing up {options.Users} users…");
        var signUp = Stopwatch.StartNew();
        var tokens = new string[options.Senders];
        await Parallel.ForAsync(0, options.Users, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            var user = Name(i);
            (await BenchAccounts.PostAsync(http.Of(i), "/v1/accounts", new { user, password = Password }, ct)).Dispose();
            if (i < options.Senders)
            {
                using var linked = await BenchAccounts.PostAsync(http.Of(i), "/v1/devices", new { user, password = Password, name = "fill" }, ct);
                tokens[i] = (await linked.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>(ct)).GetProperty("token").GetString()!;
            }
        });
        var signUpSeconds = signUp.Elapsed.TotalSeconds;

        Console.Error.WriteLine($"connecting {options.Senders} senders…");
        var windows = new SemaphoreSlim[options.Senders];
        var connections = new BenchConnection[options.Senders];
        long acked = 0, errors = 0;
        await Parallel.ForAsync(0, options.Senders, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (s, ct) =>
        {
            var window = windows[s] = new SemaphoreSlim(options.Window, options.Window);
            connections[s] = await options.Target.ConnectAsync(s, tokens[s], frame =>
            {
                switch (BenchConnection.FrameType(frame.Span))
                {
                    case "ack":
                        Interlocked.Increment(ref acked);
                        window.Release();
                        break;
                    case "error":
                        if (Interlocked.Increment(ref errors) <= 5)
                        {
                            Console.Error.WriteLine(Encoding.UTF8.GetString(frame.Span));
                        }

                        window.Release();
                        break;
                }
            }, ct, bufferSize: 16 * 1024);
        });

        Console.Error.WriteLine($"opening {options.Conversations} conversations at {options.Rate}/s…");
        var perSender = (options.Conversations + options.Senders - 1) / options.Senders;
        var others = options.Users - options.Senders;
        var started = Stopwatch.GetTimestamp();
        var perMessage = (double)Stopwatch.Frequency / options.Rate;
        await Task.Factory.StartNew(() =>
        {
            Pacer.PrepareThread();
            for (var k = 0; k < options.Conversations; k++)
            {
                Pacer.WaitUntil(started + (long)(k * perMessage));
                var s = k % options.Senders;
                var j = k / options.Senders;
                // Sender s's j-th recipient: distinct per sender, and never a sender, so every pair is new.
                var recipient = options.Senders + (int)(((long)s * perSender + j) % others);
                var conv = Protocol.Names.DirectConversation(Name(s), Name(recipient));
                windows[s].Wait(cancellationToken);
                var frame = Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"{k.ToString(CultureInfo.InvariantCulture)}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"hello there, this is the first message of our conversation\"}}");
                var send = connections[s].SendAsync(frame, cancellationToken);
                if (!send.IsCompletedSuccessfully)
                {
                    send.AsTask().GetAwaiter().GetResult();
                }
            }
        }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        var settle = Stopwatch.StartNew();
        while (Interlocked.Read(ref acked) + Interlocked.Read(ref errors) < options.Conversations && settle.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(100, cancellationToken);
        }

        var sendSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken); // as an operator reading ps after the load
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "fill",
            ["users"] = options.Users,
            ["senders"] = options.Senders,
            ["conversations"] = options.Conversations,
            ["sign_up_s"] = Math.Round(signUpSeconds, 1),
            ["send_s"] = Math.Round(sendSeconds, 1),
            ["acked"] = Interlocked.Read(ref acked),
            ["errors"] = Interlocked.Read(ref errors),
        };
        if (options.Servers.RssBytes() is { } rss)
        {
            report["server_rss_start_mb"] = rssAtStart is { } start ? Math.Round(start / 1048576.0, 1) : null;
            report["server_rss_mb"] = Math.Round(rss / 1048576.0, 1);
            if (options.Servers.Pids.Count > 1)
            {
                report["server_rss_mb_per_pid"] = options.Servers.RssPerProcess(1048576.0);
            }
        }

        foreach (var metric in new[]
        {
            "switchboard_storage_memtable_bytes", "switchboard_storage_block_cache_bytes", "switchboard_storage_table_readers_bytes",
            "switchboard_storage_files_bytes", "switchboard_messaging_cached_entries", "switchboard_messaging_groups_cached", "dotnet_total_memory_bytes",
        })
        {
            report[metric] = await ServerMetrics.ReadSumAsync(http, metric, cancellationToken);
        }

        foreach (var connection in connections)
        {
            await connection.DisposeAsync();
        }

        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        return Interlocked.Read(ref acked) == options.Conversations ? 0 : 1;
    }
}
