using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Switchboard.Cli.Bench;

/// <summary>Settings of the <c>group</c> workload.</summary>
internal sealed record GroupOptions(Uri Url, int Members, int Posts, int WarmupPosts, int IntervalMs, bool Recv, int Parallel, bool Json);

/// <summary>
/// A group with every member online; one member posts. For each post: the time until the last member has it
/// (completion), each member's latency, and the sender's ack latency. Members acknowledge with recv, as clients
/// do, so the run includes the receipt traffic a post brings back.
/// </summary>
internal sealed class GroupBench(GroupOptions options)
{
    private readonly LongHistogram _completion = new(TimeStamp.Seconds(60), 3);
    private readonly LongHistogram _perRecipient = new(TimeStamp.Seconds(60), 3);
    private readonly LongHistogram _ack = new(TimeStamp.Seconds(60), 3);

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = options.Url, Timeout = TimeSpan.FromSeconds(120) };
        var ws = new Uri($"{(options.Url.Scheme == "https" ? "wss" : "ws")}://{options.Url.Authority}/v1/ws");
        var accounts = new BenchAccounts(http);
        Console.Error.WriteLine($"creating {options.Members} accounts…");
        var created = new (string User, string Token)[options.Members];
        await Parallel.ForAsync(0, options.Members, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (i, ct) =>
            created[i] = await accounts.CreateAsync("g", i, ct));

        var (_, senderToken) = created[0];
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/groups")
        {
            Content = JsonContent.Create(new { name = "bench", members = created.Skip(1).Select(c => c.User).ToArray() }),
        };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", senderToken);
        using var response = await http.SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"create group: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }

        var conv = (await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken)).GetProperty("conv").GetString()!;
        var recipients = options.Members - 1;
        var total = options.WarmupPosts + options.Posts;
        var arrivals = new int[total + 2];
        var sentAt = new long[total + 2];
        var done = new TaskCompletionSource[total + 2];
        for (var i = 0; i < done.Length; i++)
        {
            done[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        var baseSeq = 1L; // seq 1 is the group's created event; post i has seq baseSeq + 1 + i
        Console.Error.WriteLine($"connecting {options.Members} sockets…");
        var connections = new BenchConnection[options.Members];
        var acked = new TaskCompletionSource[total];
        for (var i = 0; i < acked.Length; i++)
        {
            acked[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        await Parallel.ForAsync(1, options.Members, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken }, async (m, ct) =>
        {
            BenchConnection? self = null;
            self = await BenchConnection.ConnectAsync(ws, created[m].Token, frame =>
            {
                var now = Stopwatch.GetTimestamp();
                if (BenchConnection.FrameType(frame.Span) != "msg")
                {
                    return;
                }

                var seq = Seq(frame.Span);
                var post = (int)(seq - baseSeq - 1);
                if (post < 0 || post >= total)
                {
                    return;
                }

                var measured = post >= options.WarmupPosts;
                if (measured)
                {
                    lock (_perRecipient)
                    {
                        _perRecipient.RecordValue(Ticks(now - Volatile.Read(ref sentAt[post])));
                    }
                }

                if (Interlocked.Increment(ref arrivals[post]) == recipients)
                {
                    if (measured)
                    {
                        lock (_completion)
                        {
                            _completion.RecordValue(Ticks(now - Volatile.Read(ref sentAt[post])));
                        }
                    }

                    done[post].TrySetResult();
                }

                if (options.Recv)
                {
                    _ = self!.SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"recv\",\"conv\":\"{conv}\",\"seq\":{seq}}}"), CancellationToken.None).AsTask();
                }
            }, ct, bufferSize: 16 * 1024);
            connections[m] = self;
        });

        connections[0] = await BenchConnection.ConnectAsync(ws, senderToken, frame =>
        {
            var now = Stopwatch.GetTimestamp();
            if (BenchConnection.FrameType(frame.Span) == "ack" && BenchConnection.StringField(frame.Span, "cid"u8) is { } cid
                && int.TryParse(cid.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var post) && post < total)
            {
                if (post >= options.WarmupPosts)
                {
                    lock (_ack)
                    {
                        _ack.RecordValue(Ticks(now - Volatile.Read(ref sentAt[post])));
                    }
                }

                acked[post].TrySetResult();
            }
        }, cancellationToken, bufferSize: 64 * 1024);

        Console.Error.WriteLine($"posting {options.WarmupPosts} + {options.Posts} messages to {recipients} online members…");
        var incomplete = 0;
        for (var post = 0; post < total; post++)
        {
            Volatile.Write(ref sentAt[post], Stopwatch.GetTimestamp());
            await connections[0].SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"post-{post}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"post {post}\"}}"), cancellationToken);
            if (options.IntervalMs > 0)
            {
                await Task.Delay(options.IntervalMs, cancellationToken);
            }
            else if (!await Completed(done[post].Task))
            {
                incomplete++;
            }
        }

        for (var post = 0; post < total; post++)
        {
            if (!await Completed(done[post].Task))
            {
                incomplete++;
            }
        }

        var report = new Dictionary<string, object?>
        {
            ["workload"] = "group",
            ["members"] = options.Members,
            ["posts"] = options.Posts,
            ["warmup_posts"] = options.WarmupPosts,
            ["interval_ms"] = options.IntervalMs,
            ["recv"] = options.Recv,
            ["completion_ms"] = Percentiles(_completion),
            ["per_recipient_ms"] = Percentiles(_perRecipient),
            ["ack_ms"] = Percentiles(_ack),
            ["incomplete_posts"] = incomplete,
        };
        foreach (var connection in connections)
        {
            await connection.DisposeAsync();
        }

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

        return incomplete == 0 ? 0 : 1;
    }

    private static async Task<bool> Completed(Task task) => await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(10))) == task;

    private static long Seq(ReadOnlySpan<byte> json)
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

    internal static Dictionary<string, double> Percentiles(LongHistogram histogram)
    {
        double Ms(double percentile) => Math.Round(histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile) / (double)TimeSpan.TicksPerMillisecond, 3);
        return new Dictionary<string, double> { ["p50"] = Ms(50), ["p99"] = Ms(99), ["p999"] = Ms(99.9), ["max"] = Ms(100) };
    }

    private static long Ticks(long stopwatchTicks) => stopwatchTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency;
}
