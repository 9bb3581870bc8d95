using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// The group commit, and the one place seqs are assigned. One thread drains a bounded queue: it takes every
/// waiting command (up to <see cref="StorageOptions.MaxBatch"/>), runs each through <see cref="MessageRules"/> in
/// queue order, hands what they write to the store as one batch (one fsync), and only then tells the observer,
/// which acks and delivers. Because commands of one socket are queued one at a time, seqs follow frame order per
/// socket; because one thread assigns them, they are gap-free per conversation.
/// </summary>
internal sealed partial class Sequencer : IDisposable
{
    private readonly IMessageStore _store;
    private readonly MessageRules _rules;
    private readonly StorageOptions _options;
    private readonly TimeProvider _time;
    private readonly SwitchboardMetrics _metrics;
    private readonly ILogger<Sequencer> _logger;
    private readonly Channel<WriteCommand> _queue;
    private readonly Thread _thread;
    private ICommitObserver? _observer;

    public Sequencer(IMessageStore store, MessageRules rules, IOptions<StorageOptions> options, TimeProvider time, SwitchboardMetrics metrics, ILogger<Sequencer> logger)
    {
        _store = store;
        _rules = rules;
        _options = options.Value;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<WriteCommand>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _thread = new Thread(Run) { IsBackground = true, Name = "switchboard-sequencer" };
    }

    /// <summary>Sets who hears of committed batches and starts the thread.</summary>
    public void Start(ICommitObserver observer)
    {
        _observer = observer;
        _thread.Start();
    }

    /// <summary>Why the last batch could not be committed, until one is again; null while commits succeed.</summary>
    public string? Failing { get; private set; }

    /// <summary>Queues a command for the next batch; waits only while the queue is full.</summary>
    public ValueTask SubmitAsync(WriteCommand command, CancellationToken cancellationToken) =>
        _queue.Writer.WriteAsync(command, cancellationToken);

    /// <summary>Stops taking commands, and waits for the queued ones to be committed (bounded).</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        if (_thread.IsAlive)
        {
            _thread.Join(TimeSpan.FromSeconds(10));
        }
    }

    private void Run()
    {
        var reader = _queue.Reader;
        var batch = new List<WriteCommand>(_options.MaxBatch);
        var writes = new StoreBatch();
        while (true)
        {
            if (!reader.TryPeek(out _))
            {
                var more = reader.WaitToReadAsync();
                if (!(more.IsCompleted ? more.Result : more.AsTask().GetAwaiter().GetResult()))
                {
                    return;
                }
            }

            batch.Clear();
            while (batch.Count < _options.MaxBatch && reader.TryRead(out var command))
            {
                batch.Add(command);
            }

            var started = Stopwatch.GetTimestamp();
            Commit(batch, writes);
            _metrics.PersistLatency.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            _metrics.BatchSize.Observe(batch.Count);
            try
            {
                _observer!.OnCommitted(batch);
            }
            catch (Exception ex)
            {
                LogObserverFailed(ex);
            }
        }
    }

    private void Commit(List<WriteCommand> batch, StoreBatch writes)
    {
        writes.Clear();
        _rules.Begin(writes);
        try
        {
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds(); // one time for the whole batch
            foreach (var command in batch)
            {
                Wait(_rules.ApplyAsync(command, now));
            }

            Wait(_store.CommitAsync(writes, CancellationToken.None));
            _rules.Committed();
            if (!writes.IsEmpty)
            {
                Failing = null;
            }
        }
        catch (Exception ex)
        {
            Failing = ex.Message;
            // Nothing of this batch is known to be durable: every sender is told to retry with the same cid.
            LogBatchFailed(ex, batch.Count);
            _rules.Failed();
            foreach (var command in batch)
            {
                if (command.ErrorCode is null)
                {
                    command.Unwind();
                }
            }
        }
    }

    /// <summary>The embedded store completes at once; a store that does not is waited for on this thread.</summary>
    private static void Wait(ValueTask task)
    {
        if (task.IsCompletedSuccessfully)
        {
            return;
        }

        task.AsTask().GetAwaiter().GetResult();
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "Group commit of {Count} commands failed; all were refused as unavailable")]
    private partial void LogBatchFailed(Exception exception, int count);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Commit observer failed")]
    private partial void LogObserverFailed(Exception exception);
}
