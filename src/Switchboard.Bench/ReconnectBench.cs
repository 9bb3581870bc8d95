using System.Diagnostics;
using System.Globalization;
using System.Text;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>reconnect</c> workload.</summary>
internal sealed record ReconnectOptions(BenchTarget Target, int Clients, int Messages, TimeSpan Timeout, int Parallel, bool Json);

/// <summary>
/// A reconnect storm after an outage: N users with one device each drop their sockets at once; while they are
/// away one more user sends M messages to each of them (durable, acked); then all N reconnect at the same moment.
/// Measures the time from that moment until each client has <c>live</c> and all M messages, and checks that each
/// got exactly M distinct seqs of its conversation, nothing lost and nothing twice.
/// </summary>
internal sealed class ReconnectBench(ReconnectOptions options)
{
    // Reconnecting clients get their M messages and a few small frames; the buffer grows if a bigger one comes.
    private const int ReceiveBufferBytes = 4 * 1024;

    private readonly LongHistogram _live = Report.Histogram();
    private readonly LongHistogram _complete = Report.Histogram();
    private Client[] _clients = [];
    private BenchConnection? _sender;
    private int[] _acked = [];
    private long _ackCount;
    private long _answered;
    private long _sendErrors;
    private long _retries;
    private string? _firstSendError;
    private readonly TaskCompletionSource _allAnswered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private long Total => (long)options.Clients * options.Messages;

    private ReconnectOptions Options => options;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(120));
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken };
        Console.Error.WriteLine($"creating {options.Clients} + 1 accounts…");
        var accounts = new BenchAccounts(http);
        var sender = await accounts.CreateAsync("x", 0, options.Clients, cancellationToken); // on the node of its socket, number N
        _clients = new Client[options.Clients];
        await Parallel.ForAsync(0, options.Clients, parallel, async (i, ct) =>
        {
            var (user, token) = await accounts.CreateAsync("u", i, ct);
            _clients[i] = new Client(this, token, Protocol.Names.DirectConversation(sender.User, user));
        });

        _acked = new int[Total];
        _sender = await options.Target.ConnectAsync(options.Clients, sender.Token, OnSenderFrame, cancellationToken, bufferSize: 64 * 1024);
        var exitCode = 1;
        try
        {
            exitCode = await RunPhasesAsync(cancellationToken);
        }
        finally
        {
            await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, (c, _) => c.DisposeAsync());
            await _sender.DisposeAsync();
        }

        return exitCode;
    }

    private async Task<int> RunPhasesAsync(CancellationToken cancellationToken)
    {
        Console.Error.WriteLine($"connecting {options.Clients} sockets…");
        var failed = 0;
        using (var stopConnecting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            try
            {
                await Parallel.ForAsync(0, options.Clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = stopConnecting.Token }, async (i, ct) =>
                {
                    // Stop at the first failure: connects queued behind a timeout would each wait out their own.
                    if (!await _clients[i].ConnectAsync(i, 0, ct) && Interlocked.Increment(ref failed) == 1)
                    {
                        await stopConnecting.CancelAsync();
                    }
                });
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }

        if (failed > 0)
        {
            await Console.Error.WriteLineAsync($"first connects failed: {_clients.First(c => c.Error is not null).Error}");
            return 1;
        }

        // The outage: every socket gone at once, no close handshake.
        foreach (var client in _clients)
        {
            client.Drop();
        }

        await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, (c, _) => c.DisposeAsync());

        Console.Error.WriteLine($"sending {options.Messages} messages to each of {options.Clients} offline users…");
        var sendStart = Stopwatch.GetTimestamp();
        using (var sendDeadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            // Pipelined: the server paces the sender by reading it no faster than its commits (its per-socket in-flight limit).
            sendDeadline.CancelAfter(options.Timeout);
            try
            {
                for (var m = 0; m < options.Messages; m++)
                {
                    for (var i = 0; i < options.Clients; i++)
                    {
                        await _sender!.SendAsync(SendFrame(i, m), sendDeadline.Token);
                    }
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                await Console.Error.WriteLineAsync($"sending did not finish within {options.Timeout.TotalSeconds:0} s");
            }
        }

        var answered = await Within(_allAnswered.Task, options.Timeout - Stopwatch.GetElapsedTime(sendStart));
        var sendSeconds = Stopwatch.GetElapsedTime(sendStart).TotalSeconds;
        var acked = Interlocked.Read(ref _ackCount);

        Console.Error.WriteLine($"reconnecting {options.Clients} sockets at once…");
        var overflowsBefore = KernelCounters.ListenOverflows();
        var reconnectStart = Stopwatch.GetTimestamp();
        var reconnects = new Task<bool>[options.Clients];
        for (var i = 0; i < options.Clients; i++)
        {
            reconnects[i] = _clients[i].ConnectAsync(i, reconnectStart, cancellationToken);
        }

        var deadline = reconnectStart + (long)(options.Timeout.TotalSeconds * Stopwatch.Frequency);
        await Within(Task.WhenAll(_clients.Select(c => c.Done)), Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline));
        var overflows = KernelCounters.Delta(overflowsBefore, KernelCounters.ListenOverflows());
        var reconnectFailed = 0;
        foreach (var reconnect in reconnects)
        {
            // Each connect has the same deadline, so this wait is bounded too.
            reconnectFailed += await reconnect ? 0 : 1;
        }

        // Closed first, so no receive loop is still counting while the counts are read.
        await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel }, (c, _) => c.DisposeAsync());
        var complete = _clients.Count(c => c.Done.IsCompleted);
        var lastDone = _clients.Max(c => c.DoneAt);
        var lost = _clients.Sum(c => Math.Max(0, options.Messages - c.Distinct));
        var unexpected = _clients.Sum(c => Math.Max(0, c.Distinct - options.Messages) + c.Foreign);
        var duplicates = _clients.Sum(c => c.Duplicates);
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "reconnect",
            ["clients"] = options.Clients,
            ["messages_per_client"] = options.Messages,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["sent"] = Total,
            ["acked"] = acked,
            ["send_errors"] = Interlocked.Read(ref _sendErrors),
            ["rate_limited_retries"] = Interlocked.Read(ref _retries),
            ["send_s"] = Math.Round(sendSeconds, 2),
        };
        if (_firstSendError is not null)
        {
            report["first_send_error"] = _firstSendError;
        }

        report["reconnect_failed"] = reconnectFailed;
        if (_clients.FirstOrDefault(c => c.Error is not null)?.Error is { } error)
        {
            report["first_reconnect_error"] = error;
        }

        if (options.Target.Url.IsLoopback)
        {
            report["listen_overflows"] = overflows;
        }

        report["live_ms"] = Report.Percentiles(_live);
        report["complete_ms"] = Report.Percentiles(_complete);
        report["all_complete_ms"] = complete == options.Clients ? Report.Ms(reconnectStart, lastDone) : null;
        report["complete_clients"] = complete;
        report["lost"] = lost;
        report["duplicates"] = duplicates;
        report["unexpected"] = unexpected;
        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        var ok = answered && acked == Total && reconnectFailed == 0 && complete == options.Clients && lost == 0 && duplicates == 0 && unexpected == 0;
        return ok ? 0 : 1;
    }

    /// <summary>Waits for a task that never faults (an ack count, completions) at most that long; true if it finished.</summary>
    private static async Task<bool> Within(Task task, TimeSpan timeout)
    {
        if (task.IsCompleted)
        {
            return true;
        }

        try
        {
            await task.WaitAsync(timeout > TimeSpan.Zero ? timeout : TimeSpan.Zero);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private byte[] SendFrame(int client, int message) =>
        Encoding.UTF8.GetBytes($"{{\"t\":\"send\",\"cid\":\"{client}-{message}\",\"conv\":\"{_clients[client].Conv}\",\"kind\":\"text\",\"body\":\"m{message}\"}}");

    private static bool TryParseCid(string? cid, out int client, out int message)
    {
        client = message = -1;
        var dash = cid?.IndexOf('-', StringComparison.Ordinal) ?? -1;
        return dash > 0
            && int.TryParse(cid.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out client)
            && int.TryParse(cid.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out message);
    }

    private void OnSenderFrame(ReadOnlyMemory<byte> frame)
    {
        var type = BenchConnection.FrameType(frame.Span);
        if (type is not ("ack" or "error"))
        {
            return;
        }

        var cid = BenchConnection.StringField(frame.Span, type == "ack" ? "cid"u8 : "ref"u8);
        if (!TryParseCid(cid, out var client, out var message) || client >= options.Clients || message >= options.Messages)
        {
            if (type == "error" && Interlocked.Increment(ref _sendErrors) == 1)
            {
                _firstSendError = Encoding.UTF8.GetString(frame.Span); // an error about no send of ours
            }

            return;
        }

        if (type == "error" && BenchConnection.StringField(frame.Span, "code"u8) == "rate_limited")
        {
            // Refused before it was stored: send it again with the same cid once the bucket has a token.
            Interlocked.Increment(ref _retries);
            var delay = TimeSpan.FromMilliseconds(Math.Clamp(BenchConnection.NumberField(frame.Span, "retry_after"u8) ?? 100, 1, 10_000));
            _ = Task.Delay(delay).ContinueWith(_ => _sender!.SendAsync(SendFrame(client, message), CancellationToken.None).AsTask(), TaskScheduler.Default).Unwrap();
            return;
        }

        // An ack, or an error other than rate_limited: this send has its answer. A second answer (a dup ack of a
        // send that was retried) is not counted again.
        if (Interlocked.Exchange(ref _acked[(long)message * options.Clients + client], 1) != 0)
        {
            return;
        }

        if (type == "ack")
        {
            Interlocked.Increment(ref _ackCount);
        }
        else if (Interlocked.Increment(ref _sendErrors) == 1)
        {
            _firstSendError = Encoding.UTF8.GetString(frame.Span);
        }

        if (Interlocked.Increment(ref _answered) == Total)
        {
            _allAnswered.TrySetResult();
        }
    }

    /// <summary>One user's device: its socket, and the seqs of its conversation it has seen since it reconnected.</summary>
    private sealed class Client(ReconnectBench bench, string token, string conv) : IAsyncDisposable
    {
        private readonly HashSet<long> _seqs = [];
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private BenchConnection? _connection;
        private long _reconnectStart;
        private bool _live;

        public string Conv => conv;

        public string? Error { get; private set; }

        public Task Done => _done.Task;

        public long DoneAt { get; private set; }

        public int Distinct { get; private set; }

        public int Duplicates { get; private set; }

        public int Foreign { get; private set; }

        /// <summary>Connects up to <c>live</c>; <paramref name="reconnectStart"/> is 0 for the first connect (nothing measured).</summary>
        public async Task<bool> ConnectAsync(int index, long reconnectStart, CancellationToken cancellationToken)
        {
            _reconnectStart = reconnectStart;
            try
            {
                _connection = await bench.Options.Target.ConnectAsync(index, token, OnFrame, cancellationToken, ReceiveBufferBytes, bench.Options.Timeout);
                return true;
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                Error ??= ex.GetBaseException().Message;
                return false;
            }
        }

        public void Drop() => _connection?.Abort();

        // Frames of one socket arrive on its receive loop, one at a time: no lock needed. Done publishes the
        // counts to the reading thread.
        private void OnFrame(ReadOnlyMemory<byte> frame)
        {
            if (_reconnectStart == 0)
            {
                return;
            }

            var now = Stopwatch.GetTimestamp();
            switch (BenchConnection.FrameType(frame.Span))
            {
                case "msg":
                    if (BenchConnection.StringField(frame.Span, "conv"u8) != conv)
                    {
                        Foreign++;
                    }
                    else if (!_seqs.Add(BenchConnection.NumberField(frame.Span, "seq"u8) ?? 0))
                    {
                        Duplicates++;
                    }
                    else
                    {
                        Distinct = _seqs.Count;
                    }

                    break;
                case "live":
                    _live = true;
                    Report.Record(bench._live, now - _reconnectStart);
                    break;
                default:
                    return;
            }

            if (_live && Distinct >= bench.Options.Messages && !_done.Task.IsCompleted)
            {
                DoneAt = now;
                Report.Record(bench._complete, now - _reconnectStart);
                _done.TrySetResult();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
                _connection = null;
            }
        }
    }
}
