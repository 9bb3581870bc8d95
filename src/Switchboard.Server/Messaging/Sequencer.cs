using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// The group commit, and the one place seqs are assigned. Three threads in a pipeline, each batch passing
/// through them in order:
/// <list type="number">
/// <item><b>Deciding</b> (<c>switchboard-sequencer</c>): takes every waiting command (up to
/// <see cref="StorageOptions.MaxBatch"/>), runs each through <see cref="MessageRules"/> in queue order, and hands
/// the batch on. While the batch before it is still being written, it is already deciding the next one.</item>
/// <item><b>Committing</b> (<c>switchboard-commit</c>): writes each batch to the store (one fsync) and publishes
/// its group changes.</item>
/// <item><b>Publishing</b> (<c>switchboard-publish</c>): tells the observer, which acks and delivers, while the
/// next batch is being written.</item>
/// </list>
/// Commands of one socket are queued one at a time, so seqs follow frame order per socket; one thread assigns
/// them, so they are gap-free per conversation. A failed batch fails the batches decided after it too (they may
/// build on its seqs), and the caches are read again from the store.
/// </summary>
internal sealed partial class Sequencer : IDisposable
{
    private readonly IMessageStore _store;
    private readonly MessageRules _rules;
    private readonly GroupDirectory _groups;
    private readonly StorageOptions _options;
    private readonly TimeProvider _time;
    private readonly SwitchboardMetrics _metrics;
    private readonly ILogger<Sequencer> _logger;
    private readonly Channel<WriteCommand> _queue;
    private readonly long _syncInterval; // Stopwatch ticks
    private readonly long _syncStep;

    // Cursor moves wait in a lane of their own, so that a flood of receipts (a large group answering a post) never
    // holds up the sends behind it: a batch takes the waiting sends first, then cursors.
    private readonly Channel<WriteCommand> _cursors;
    private readonly ManualResetEventSlim _wake = new(false, spinCount: 0);
    private int _sleeping;

    // Cursor moves taken from their lane but left for the next batch (the deciding thread's only), oldest first.
    private readonly List<WriteCommand> _carried = [];

    // Commands of failed batches to decide again, in the order they were first decided (the deciding thread's only).
    private readonly List<WriteCommand> _retry = [];

    /// <summary>
    /// Times a command is refused because another node moved its conversation's head first, before it is answered
    /// unavailable (the client retries with the same cid). Deciding again a batch that was never written, because
    /// one before it failed, is not counted: that was no fault of its own.
    /// </summary>
    internal const int MaxAttempts = 8;

    /// <summary>A bound on deciding again batches that were never written, against a loop no one foresaw.</summary>
    private const int MaxRedecisions = 64;

    // Batches decided and batches whose outcome the deciding thread has taken (the deciding thread's only).
    private long _decidedCount;
    private long _takenCount;
    // Set when a batch completes; waited on only after a failure (a count would grow with every batch otherwise).
    private readonly ManualResetEventSlim _completedSignal = new(false, spinCount: 0);
    private const int CursorsBetweenLooks = 64;

    // One batch waits while one is written: deciding never runs further ahead than that.
    private readonly Channel<Decided> _decided = Channel.CreateBounded<Decided>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
    private readonly Channel<Decided> _committed = Channel.CreateBounded<Decided>(new BoundedChannelOptions(2) { SingleReader = true, SingleWriter = true });
    private readonly ConcurrentQueue<Decided> _completed = new();
    private readonly Thread _deciding;
    private readonly Thread _committing;
    private readonly Thread _publishing;
    private ICommitObserver? _observer;
    private int _epoch;
    private int _failedEpoch = -1;

    /// <summary>Batches handed to the committing thread and not yet published.</summary>
    private int _handedOff;

    public Sequencer(IMessageStore store, MessageRules rules, GroupDirectory groups, IOptions<StorageOptions> options, TimeProvider time, SwitchboardMetrics metrics, ILogger<Sequencer> logger)
    {
        _store = store;
        _rules = rules;
        _groups = groups;
        _options = options.Value;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<WriteCommand>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _cursors = Channel.CreateBounded<WriteCommand>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _syncInterval = _options.SyncIntervalMicroseconds * Stopwatch.Frequency / 1_000_000;
        _syncStep = Math.Max(1, _syncInterval / 4);
        _deciding = new Thread(Decide) { IsBackground = true, Name = "switchboard-sequencer" };
        _committing = new Thread(Commit) { IsBackground = true, Name = "switchboard-commit" };
        _publishing = new Thread(Publish) { IsBackground = true, Name = "switchboard-publish" };
    }

    /// <summary>Why the last batch could not be committed, until one is again; null while commits succeed.</summary>
    public string? Failing { get; private set; }

    /// <summary>Sets who hears of committed batches and starts the threads.</summary>
    public void Start(ICommitObserver observer)
    {
        _observer = observer;
        _publishing.Start();
        _committing.Start();
        _deciding.Start();
    }

    /// <summary>Queues a command for the next batch; waits only while its lane is full.</summary>
    public ValueTask SubmitAsync(WriteCommand command, CancellationToken cancellationToken)
    {
        var written = (command is CursorCommand ? _cursors : _queue).Writer.WriteAsync(command, cancellationToken);
        if (!written.IsCompletedSuccessfully)
        {
            return WakeAfterAsync(written);
        }

        Wake();
        return ValueTask.CompletedTask;
    }

    private async ValueTask WakeAfterAsync(ValueTask written)
    {
        await written;
        Wake();
    }

    private void Wake()
    {
        if (Volatile.Read(ref _sleeping) != 0)
        {
            _wake.Set();
        }
    }

    /// <summary>
    /// Waits until either lane has a command; false once both are closed and empty. The flag is raised before
    /// the lanes are looked at again, so a command written meanwhile either is seen or sets the event.
    /// </summary>
    private bool WaitForWork()
    {
        while (true)
        {
            if (_carried.Count > 0 || _retry.Count > 0 || _queue.Reader.TryPeek(out _) || _cursors.Reader.TryPeek(out _))
            {
                return true;
            }

            if (_queue.Reader.Completion.IsCompleted && _cursors.Reader.Completion.IsCompleted)
            {
                return false;
            }

            Interlocked.Exchange(ref _sleeping, 1);
            if (!_queue.Reader.TryPeek(out _) && !_cursors.Reader.TryPeek(out _) && !(_queue.Reader.Completion.IsCompleted && _cursors.Reader.Completion.IsCompleted))
            {
                _wake.Wait();
            }

            Interlocked.Exchange(ref _sleeping, 0);
            _wake.Reset();
        }
    }

    /// <summary>Stops taking commands, and waits for the queued ones to be committed (bounded).</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _cursors.Writer.TryComplete();
        _wake.Set();
        foreach (var thread in new[] { _deciding, _committing, _publishing })
        {
            if (thread.IsAlive)
            {
                thread.Join(TimeSpan.FromSeconds(10));
            }
        }
    }

    private void Decide()
    {
        var reader = _queue.Reader;
        var cursors = _cursors.Reader;
        // Cursor moves always get at least a quarter of a batch, so a stream of sends cannot starve them.
        var cursorShare = Math.Max(1, _options.MaxBatch / 4);
        try
        {
            while (WaitForWork())
            {
                PaceSync();
                var batch = _spareLists.TryDequeue(out var spare) ? spare : new List<WriteCommand>(256);
                if (_retry.Count > 0)
                {
                    // Decided again before anything newer, so seqs still follow each socket's frame order.
                    batch.AddRange(_retry);
                    _retry.Clear();
                }

                var sendRoom = _options.MaxBatch - Math.Min(_carried.Count + cursors.Count, cursorShare);
                while (batch.Count < sendRoom && reader.TryRead(out var command))
                {
                    batch.Add(command);
                }

                var sends = batch.Count;
                var taken = 0;
                while (batch.Count < _options.MaxBatch && taken < _carried.Count)
                {
                    batch.Add(_carried[taken++]);
                }

                _carried.RemoveRange(0, taken);
                while (batch.Count < _options.MaxBatch && cursors.TryRead(out var cursor))
                {
                    batch.Add(cursor);
                }

                if (TakeCompletions())
                {
                    // A batch failed: every batch decided after it fails too. Their commands to decide again are
                    // known only once they are done, and go first, in order.
                    WaitForOutstanding();
                    if (_retry.Count > 0)
                    {
                        batch.InsertRange(0, _retry);
                        _retry.Clear();
                    }
                }

                var state = (_spareStates.Count > 0 ? _spareStates.Pop() : new BatchState()).Reset(_epoch);
                _rules.Begin(state);
                Exception? broken = null;
                try
                {
                    if (_options.SharedWriters)
                    {
                        Wait(_rules.PrepareAsync(batch));
                    }

                    var now = _time.GetUtcNow().ToUnixTimeMilliseconds(); // one time for the whole batch
                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (i > sends && (i - sends) % CursorsBetweenLooks == 0 && reader.Count > 0)
                        {
                            // Sends came while this batch's cursor moves were being decided: the rest of the moves
                            // wait for the next batch, after those sends, so a large group's receipts never hold
                            // up a send for longer than a few dozen moves take.
                            _carried.InsertRange(0, batch.Skip(i));
                            batch.RemoveRange(i, batch.Count - i);
                            break;
                        }

                        if (_options.SharedWriters)
                        {
                            // A store over shards: a read that fails (its shard is down) refuses that command only,
                            // so the other shards' commands go on. A command writes to the batch only after its reads.
                            try
                            {
                                Wait(_rules.ApplyAsync(batch[i], now));
                            }
                            catch (Exception ex) when (ex is not OutOfMemoryException)
                            {
                                LogReadFailed(ex.Message);
                                batch[i].Fail(Protocol.ErrorCodes.Unavailable, "the conversation's storage is unavailable; retry with the same cid");
                            }
                        }
                        else
                        {
                            Wait(_rules.ApplyAsync(batch[i], now));
                        }
                    }
                }
                catch (Exception ex)
                {
                    broken = ex; // a read failed half way: the batch is not written
                }

                _rules.Seal();
                _decidedCount++;
                if (state.Writes.MustSync)
                {
                    _lastSync = Stopwatch.GetTimestamp();
                }

                var decided = new Decided(batch, state, broken);
                if (Volatile.Read(ref _handedOff) == 0 && batch.Count <= _options.InlineCommitBatch)
                {
                    // Light load: nothing is being written or published, so this thread writes and publishes the
                    // batch itself, in order, and no thread is woken for it.
                    CommitOne(decided);
                    TakeCompletions();
                    PublishOne(decided);
                    continue;
                }

                Interlocked.Increment(ref _handedOff);
                var handed = _decided.Writer.WriteAsync(decided);
                if (!handed.IsCompletedSuccessfully)
                {
                    handed.AsTask().GetAwaiter().GetResult(); // the batch before the previous one is still being written
                }
            }
        }
        finally
        {
            _decided.Writer.TryComplete();
        }
    }

    /// <summary>When the last batch that needs an fsync was decided.</summary>
    private long _lastSync;

    /// <summary>
    /// Spaces fsyncs at least <see cref="StorageOptions.SyncIntervalMicroseconds"/> apart while a few writes keep
    /// coming, so each fsync carries several of them (see the setting). Waits in short steps and stops early once
    /// enough writes are queued; cursor moves alone are never made to wait (they need no fsync).
    /// </summary>
    private void PaceSync()
    {
        if (_syncInterval == 0)
        {
            return;
        }

        var due = _lastSync + _syncInterval;
        while (true)
        {
            var waiting = _queue.Reader.Count;
            var now = Stopwatch.GetTimestamp();
            if (waiting == 0 || waiting >= _options.SyncIntervalBatch || now >= due)
            {
                return;
            }

            PreciseSleep.Until(Math.Min(due, now + _syncStep));
        }
    }

    /// <summary>Waits until every batch decided so far is done, taking their outcomes.</summary>
    private void WaitForOutstanding()
    {
        while (_takenCount < _decidedCount)
        {
            _completedSignal.Wait(TimeSpan.FromMilliseconds(50));
            _completedSignal.Reset(); // what completed before this is taken below
            TakeCompletions();
        }
    }

    /// <summary>
    /// Moves what completed into the caches, in order; after a failure, starts a new epoch. Commands to decide
    /// again are gathered in <see cref="_retry"/>. True when a failure started a new epoch.
    /// </summary>
    private bool TakeCompletions()
    {
        var failed = false;
        while (_completed.TryDequeue(out var done))
        {
            _takenCount++;
            _retry.AddRange(done.Retry);
            if (done.Failed)
            {
                if (done.State.Epoch == _epoch)
                {
                    _rules.Failed();
                    _epoch++;
                    failed = true;
                }
            }
            else if (done.State.Epoch == _epoch)
            {
                _rules.Committed(done.State);
            }

            if (_spareStates.Count < 4)
            {
                _spareStates.Push(done.State); // written and promoted: nothing refers to it any more
            }
        }

        return failed;
    }

    // Reused batch states (the deciding thread's only) and command lists (given back once published).
    private readonly Stack<BatchState> _spareStates = new();
    private readonly ConcurrentQueue<List<WriteCommand>> _spareLists = new();

    private void Commit()
    {
        try
        {
            CommitAll();
        }
        finally
        {
            _committed.Writer.TryComplete();
        }
    }

    private void CommitAll()
    {
        while (Next(_decided.Reader) is { } decided)
        {
            CommitOne(decided);
            var handed = _committed.Writer.WriteAsync(decided);
            if (!handed.IsCompletedSuccessfully)
            {
                handed.AsTask().GetAwaiter().GetResult();
            }
        }
    }

    /// <summary>Writes one batch (one fsync) and publishes its group changes; then the deciding thread may take it as done.</summary>
    private void CommitOne(Decided decided)
    {
        var started = Stopwatch.GetTimestamp();
        var state = decided.State;
        if (decided.Broken is not null)
        {
            Fail(decided, decided.Broken);
        }
        else if (state.Epoch <= Volatile.Read(ref _failedEpoch))
        {
            Fail(decided, new InvalidOperationException("an earlier batch this one builds on failed"), notWritten: true);
        }
        else
        {
            try
            {
                Wait(_store.CommitAsync(state.Writes, CancellationToken.None));
                foreach (var (_, group) in state.Groups)
                {
                    _groups.Publish(group); // before anything is delivered, so readers never see older groups
                }

                if (!state.Writes.IsEmpty)
                {
                    Failing = null;
                }
            }
            catch (PartialCommitException ex)
            {
                FailPart(decided, ex);
            }
            catch (Exception ex)
            {
                Fail(decided, ex);
            }
        }

        _metrics.PersistLatency.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        _metrics.BatchSize.Observe(decided.Commands.Count);
        _completed.Enqueue(decided); // the deciding thread may now treat it as committed (or failed)
        _completedSignal.Set();
    }

    private void Publish()
    {
        while (Next(_committed.Reader) is { } committed)
        {
            PublishOne(committed);
            Interlocked.Decrement(ref _handedOff);
        }
    }

    /// <summary>The next batch from the stage before, waiting on this thread; null once that stage is done.</summary>
    private static Decided? Next(ChannelReader<Decided> reader)
    {
        while (true)
        {
            if (reader.TryRead(out var next))
            {
                return next;
            }

            var more = reader.WaitToReadAsync();
            if (!(more.IsCompleted ? more.Result : more.AsTask().GetAwaiter().GetResult()))
            {
                return null;
            }
        }
    }

    /// <summary>Acks and deliveries of a durable batch (or the errors of a failed one).</summary>
    private void PublishOne(Decided committed)
    {
        try
        {
            _observer!.OnCommitted(committed.Commands);
        }
        catch (Exception ex)
        {
            LogObserverFailed(ex);
        }

        if (_spareLists.Count < 4)
        {
            committed.Commands.Clear();
            _spareLists.Enqueue(committed.Commands);
        }
    }

    /// <summary>
    /// Nothing of this batch is known to be durable. A batch that was never written (it built on one that failed)
    /// is decided again; one that failed in the store is refused, and every sender is told to retry with the same cid.
    /// </summary>
    private void Fail(Decided decided, Exception ex, bool notWritten = false)
    {
        decided.Failed = true;
        Volatile.Write(ref _failedEpoch, Math.Max(Volatile.Read(ref _failedEpoch), decided.State.Epoch));
        if (!notWritten)
        {
            Failing = ex.Message;
            LogBatchFailed(ex, decided.Commands.Count);
        }

        var kept = 0;
        for (var i = 0; i < decided.Commands.Count; i++)
        {
            var command = decided.Commands[i];
            if (notWritten && ++command.Redecisions < MaxRedecisions)
            {
                command.Reset();
                decided.Retry.Add(command);
                continue;
            }

            if (command.ErrorCode is null)
            {
                command.Unwind();
            }

            decided.Commands[kept++] = command;
        }

        decided.Commands.RemoveRange(kept, decided.Commands.Count - kept);
    }

    /// <summary>
    /// Part of the batch was written (a store over shards): commands of the conversations written stand; those of a
    /// conversation another writer moved are decided again; those of a failed shard are refused as unavailable.
    /// The caches are read again either way, as after any failure.
    /// </summary>
    private void FailPart(Decided decided, PartialCommitException ex)
    {
        decided.Failed = true;
        Volatile.Write(ref _failedEpoch, Math.Max(Volatile.Read(ref _failedEpoch), decided.State.Epoch));
        if (ex.Failed.Count > 0)
        {
            Failing = ex.Message;
            LogPartFailed(ex, ex.Failed.Count);
        }
        else
        {
            _metrics.Conflicts.Inc();
        }

        var kept = 0;
        for (var i = 0; i < decided.Commands.Count; i++)
        {
            var command = decided.Commands[i];
            var conv = command is GroupCommand { CreatedConv: { } created } ? created : command.Conv;
            if (ex.Moved.Contains(conv) && ++command.Attempts < MaxAttempts)
            {
                command.Reset();
                decided.Retry.Add(command);
                continue;
            }

            if ((ex.Moved.Contains(conv) || ex.Failed.Contains(conv)) && command.ErrorCode is null)
            {
                if (ex.Moved.Contains(conv))
                {
                    LogGaveUp(conv, command.Attempts);
                }

                command.Unwind();
            }

            decided.Commands[kept++] = command;
        }

        decided.Commands.RemoveRange(kept, decided.Commands.Count - kept);
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

    /// <summary>A decided batch on its way to the store.</summary>
    private sealed class Decided(List<WriteCommand> commands, BatchState state, Exception? broken)
    {
        public List<WriteCommand> Commands { get; } = commands;
        public BatchState State { get; } = state;
        public Exception? Broken { get; } = broken;
        public bool Failed { get; set; }

        /// <summary>Commands taken out of this batch to be decided again.</summary>
        public List<WriteCommand> Retry { get; } = [];
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "Group commit of {Count} commands failed; all were refused as unavailable")]
    private partial void LogBatchFailed(Exception exception, int count);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Warning, Message = "A command in {Conv} was refused as unavailable: other nodes moved the conversation's head first {Attempts} times")]
    private partial void LogGaveUp(string conv, int attempts);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Error, Message = "Part of a group commit failed: the commands of {Count} conversation(s) were refused as unavailable")]
    private partial void LogPartFailed(Exception exception, int count);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "A command was refused as unavailable: a read for it failed ({Reason})")]
    private partial void LogReadFailed(string reason);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Commit observer failed")]
    private partial void LogObserverFailed(Exception exception);
}
