using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>group</c> workload.</summary>
internal sealed record GroupOptions(BenchTarget Target, int Members, int Posts, int WarmupPosts, int IntervalMs, bool Recv, int Parallel, bool Json);

/// <summary>
/// A group with every member online; one member posts. For each post: the time until the last member has it
/// (completion), each member's latency, and the sender's ack latency. Members acknowledge with recv, as clients
/// do, so the run includes the receipt traffic a post brings back.
/// </summary>
internal sealed class GroupBench(GroupOptions options)
{
    // How long a post may take to reach every member (and the posts still on their way at the end, to arrive and
    // be acked) before it counts as incomplete.
    private static readonly TimeSpan PostTimeout = TimeSpan.FromSeconds(10);
    private readonly LongHistogram _completion = Report.Histogram();
    private readonly LongHistogram _perRecipient = Report.Histogram();
    private readonly LongHistogram _ack = Report.Histogram();

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
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
        using var response = await http.Of(0).SendAsync(request, cancellationToken); // the first member's node
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
            self = await options.Target.ConnectAsync(m, created[m].Token, frame =>
            {
                var now = Stopwatch.GetTimestamp();
                if (BenchConnection.FrameType(frame.Span) != "msg")
                {
                    return;
                }

                var seq = BenchConnection.NumberField(frame.Span, "seq"u8) ?? 0;
                var post = (int)(seq - baseSeq - 1);
                if (post < 0 || post >= total)
                {
                    return;
                }

                var measured = post >= options.WarmupPosts;
                if (measured)
                {
                    Report.Record(_perRecipient, now - Volatile.Read(ref sentAt[post]));
                }

                if (Interlocked.Increment(ref arrivals[post]) == recipients)
                {
                    if (measured)
                    {
                        Report.Record(_completion, now - Volatile.Read(ref sentAt[post]));
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

        connections[0] = await options.Target.ConnectAsync(0, senderToken, frame =>
        {
            var now = Stopwatch.GetTimestamp();
            if (BenchConnection.FrameType(frame.Span) == "ack" && BenchConnection.StringField(frame.Span, "cid"u8) is { } cid
                && int.TryParse(cid.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var post) && post < total)
            {
                if (post >= options.WarmupPosts)
                {
                    Report.Record(_ack, now - Volatile.Read(ref sentAt[post]));
                }

                acked[post].TrySetResult();
            }
        }, cancellationToken, bufferSize: 64 * 1024);

        Console.Error.WriteLine($"posting {options.WarmupPosts} + {options.Posts} messages to {recipients} online members…");
        var posted = 0;
        for (var post = 0; post < total; post++)
        {
            Volatile.Write(ref sentAt[post], Stopwatch.GetTimestamp());
            await connections[0].SendAsync(Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"post-{post}\",\"conv\":\"{conv}\",\"kind\":\"text\",\"body\":\"post {post}\"}}"), cancellationToken);
            posted++;
            if (options.IntervalMs > 0)
            {
                await Task.Delay(options.IntervalMs, cancellationToken);
            }
            else if (!await Completed(done[post].Task))
            {
                // Stop posting: the run has failed, and every further post would wait out its own timeout.
                await Console.Error.WriteLineAsync($"post {post} did not reach every member within {PostTimeout.TotalSeconds:0} s; stopping");
                break;
            }
        }

        // One bounded wait for what is still on its way (with --interval, the last posts).
        await Completed(Task.WhenAll(done.Take(posted).Select(d => d.Task)));
        await Completed(Task.WhenAll(acked.Take(posted).Select(a => a.Task)));
        var incomplete = total - done.Take(total).Count(d => d.Task.IsCompleted);
        var unacked = total - acked.Count(a => a.Task.IsCompleted);

        var report = new Dictionary<string, object?>
        {
            ["workload"] = "group",
            ["members"] = options.Members,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["posts"] = options.Posts,
            ["warmup_posts"] = options.WarmupPosts,
            ["interval_ms"] = options.IntervalMs,
            ["recv"] = options.Recv,
            ["completion_ms"] = Report.Percentiles(_completion),
            ["per_recipient_ms"] = Report.Percentiles(_perRecipient),
            ["ack_ms"] = Report.Percentiles(_ack),
            ["posted"] = posted,
            ["incomplete_posts"] = incomplete,
            ["unacked_posts"] = unacked,
        };
        options.Target.AddTo(report);
        foreach (var connection in connections)
        {
            await connection.DisposeAsync();
        }

        Report.Print(report, options.Json);
        return incomplete == 0 && unacked == 0 ? 0 : 1;
    }

    private static async Task<bool> Completed(Task task) => await Task.WhenAny(task, Task.Delay(PostTimeout)) == task;
}
