using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Delivery;
using Switchboard.Server.Hosting;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Cluster;

/// <summary>
/// The repair of lost hints. For every conversation this node has delivered or heard of lately, the last seq it
/// knows of; the sweep reads those conversations' heads from the store in one query per shard: soon after a sign
/// that hints were lost (a bus message skipped, NATS or Redis back after an outage, a message dropped, another node
/// telling it could not publish), for one conversation when a seq seen above a hole stays so past the grace (the
/// node that wrote the missing event died before its hint, or the hint vanished without a sign), and every
/// <see cref="ClusterOptions.SweepSeconds"/> in any case, for a loss nothing showed; and a head past what this node knows (by events older than a grace of two
/// seconds, so a hint still on its way is not raced) means a hint was lost (NATS away, Redis
/// restarted empty, a queue full): the missing events are read from the store and handed to this node's sockets,
/// which take them in seq order (a client drops a seq it already has). A conversation this node never heard of
/// cannot be missed by it: its sockets' devices get it on their next connect, from their cursors, or the next
/// event's gap makes the client sync. Bounded: past <see cref="MaxWatched"/> conversations, the least recently
/// heard of are forgotten.
/// </summary>
internal sealed partial class HeadWatch(
    IMessageStore store,
    GroupDirectory groups,
    LocalDeliveryHub local,
    ILocalSessions sessions,
    IOptions<ClusterOptions> options,
    TimeProvider time,
    SwitchboardMetrics metrics,
    ILogger<HeadWatch> logger) : BackgroundService
{
    internal const int MaxWatched = 100_000;

    /// <summary>An event younger than this may still have its hint on the way: the sweep leaves it to the next pass.</summary>
    private const long GraceMs = 2_000;
    private const int MaxRepairPerConversation = 500;

    private readonly ConcurrentDictionary<string, Entry> _known = new(StringComparer.Ordinal);

    /// <summary>
    /// What this node has seen of a conversation: every seq up to <see cref="Through"/>, and some above it (events
    /// of several nodes interleave, so seeing seq 9 says nothing of seq 8).
    /// </summary>
    private sealed class Entry(long through)
    {
        public long Through = through;
        public SortedSet<long>? Ahead;
        public long Heard = Environment.TickCount64;

        public void See(long seq)
        {
            if (seq <= Through)
            {
                return;
            }

            if (seq == Through + 1)
            {
                Through = seq;
                Absorb();
                return;
            }

            (Ahead ??= []).Add(seq);
            if (Ahead.Count > MaxAhead)
            {
                // Bounded: the oldest gap is given up (a device that missed it finds it by the gap, or on reconnect).
                Through = Ahead.Min;
                Ahead.Remove(Through);
                Absorb();
            }
        }

        /// <summary>Moves <see cref="Through"/> over the seqs above it that were seen.</summary>
        private void Absorb()
        {
            while (Ahead is { Count: > 0 } && Ahead.Min <= Through + 1)
            {
                Through = Math.Max(Through, Ahead.Min);
                Ahead.Remove(Ahead.Min);
            }
        }

        public bool Saw(long seq) => seq <= Through || (Ahead?.Contains(seq) ?? false);
    }

    private const int MaxAhead = 1_024;

    public int Count => _known.Count;

    /// <summary>This node delivered, or heard of, the conversation's event at <paramref name="seq"/>.</summary>
    public void Saw(string conv, long seq)
    {
        // The first event heard of a conversation: what came before it was this node's devices' to replay.
        var entry = _known.GetOrAdd(conv, static (_, s) => new Entry(s - 1), seq);
        bool gap;
        lock (entry)
        {
            entry.Heard = Environment.TickCount64;
            entry.See(seq);
            gap = entry.Through < seq - 1;
        }

        if (gap)
        {
            // Events below this one exist (seqs have no holes) and no hint of them came yet: usually one is on its way
            // from another node; if none has come once the grace is past, it was lost, and this conversation is read.
            _gaps.TryAdd(conv, (seq, Environment.TickCount64));
        }

        if (_known.Count > MaxWatched)
        {
            Trim();
        }
    }

    private void Trim()
    {
        var keep = _known.OrderByDescending(p => p.Value.Heard).Take(MaxWatched * 3 / 4).Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var conv in _known.Keys)
        {
            if (!keep.Contains(conv))
            {
                _known.TryRemove(conv, out _);
            }
        }
    }

    // Conversations with a seq seen above one not seen: the seq above the hole, and when it was first seen.
    private readonly ConcurrentDictionary<string, (long Above, long Since)> _gaps = new(StringComparer.Ordinal);

    /// <summary>Conversations with a hole below a seq this node saw.</summary>
    public int Gaps => _gaps.Count;

    private readonly SemaphoreSlim _soon = new(0);
    private int _soonPending;

    /// <summary>Hints were (or may have been) lost: sweep once the events of the moment are past the grace, not at the next tick.</summary>
    public void SweepSoon()
    {
        if (Interlocked.Exchange(ref _soonPending, 1) == 0)
        {
            _soon.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var nextFull = Environment.TickCount64 + (options.Value.SweepSeconds * 1000L);
        while (!stoppingToken.IsCancellationRequested)
        {
            // Woken at least every second for the holes past their grace; a full pass when a loss was signalled or
            // the period is over.
            var wait = Math.Clamp(nextFull - Environment.TickCount64, 0, 1_000);
            var full = false;
            if (await _soon.WaitAsync(TimeSpan.FromMilliseconds(wait), stoppingToken))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(GraceMs + 500), stoppingToken);
                Interlocked.Exchange(ref _soonPending, 0);
                metrics.SweepsEarly.Inc();
                full = true;
            }

            full |= Environment.TickCount64 >= nextFull;
            try
            {
                if (full)
                {
                    nextFull = Environment.TickCount64 + (options.Value.SweepSeconds * 1000L);
                    await SweepAsync(stoppingToken);
                }
                else if (DueHoles() is { Count: > 0 } holes)
                {
                    metrics.SweepsEarly.Inc();
                    await SweepAsync(holes, stoppingToken);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogSweepFailed(ex.Message); // a shard away: tried again at the next tick
            }
        }
    }

    /// <summary>
    /// The conversations whose hole is older than the grace and still open: a hint that was never sent (its node
    /// died between commit and publish) or lost on the way without a sign. Holes that closed are forgotten, and a
    /// conversation with another hole above is watched again from now.
    /// </summary>
    private List<string> DueHoles()
    {
        var due = new List<string>();
        if (_gaps.IsEmpty)
        {
            return due;
        }

        var settled = Environment.TickCount64 - GraceMs - 500;
        foreach (var (conv, (above, since)) in _gaps)
        {
            if (since > settled)
            {
                continue;
            }

            _gaps.TryRemove(conv, out _);
            if (!_known.TryGetValue(conv, out var entry))
            {
                continue;
            }

            long? again = null;
            lock (entry)
            {
                if (entry.Through < above - 1)
                {
                    due.Add(conv);
                }
                else if (entry.Ahead is { Count: > 0 } ahead)
                {
                    again = ahead.Max;
                }
            }

            if (again is { } seq)
            {
                _gaps.TryAdd(conv, (seq, Environment.TickCount64));
            }
        }

        return due;
    }

    /// <summary>One pass: every watched conversation's head against what this node knows.</summary>
    public Task SweepAsync(CancellationToken cancellationToken) => SweepAsync(_known.Keys.ToList(), cancellationToken);

    /// <summary>Those conversations' heads against what this node knows.</summary>
    private async Task SweepAsync(List<string> convs, CancellationToken cancellationToken)
    {
        if (convs.Count == 0)
        {
            return;
        }

        var heads = await store.GetLastSeqsAsync(convs, cancellationToken);
        foreach (var (conv, head) in heads)
        {
            if (!_known.TryGetValue(conv, out var entry))
            {
                continue;
            }

            long from;
            lock (entry)
            {
                from = entry.Through;
            }

            if (from >= head)
            {
                continue;
            }

            if (Names.IsGroup(conv))
            {
                groups.Forget(conv); // events this node did not hear of may have changed the membership
            }

            var members = Names.TryParseDirect(conv, out var a, out var b) ? [a, b] : (await groups.GetAsync(conv, cancellationToken))?.Users;
            if (members is null || !members.Any(m => sessions.Sessions(m).Length > 0))
            {
                lock (entry)
                {
                    entry.Through = Math.Max(entry.Through, head); // nobody here to tell: their devices catch up from their cursors
                    entry.Ahead?.RemoveWhere(s => s <= entry.Through);
                }

                continue;
            }

            var settled = time.GetUtcNow().ToUnixTimeMilliseconds() - GraceMs;
            var missed = await store.ReadAfterAsync(conv, from, head, MaxRepairPerConversation, cancellationToken);
            foreach (var stored in missed)
            {
                if (stored.Ts > settled)
                {
                    // Its hint may still be on the way; look again once it is past the grace, rather than at the
                    // next tick, in case no hint is coming.
                    SweepSoon();
                    break;
                }

                bool seen;
                lock (entry)
                {
                    seen = entry.Saw(stored.Seq);
                    entry.See(stored.Seq);
                }

                if (!seen)
                {
                    await local.SendEventAsync(new EventDelivery(conv, stored.Seq, Messaging.Frames.Event(stored), members, null, 0, 0));
                    metrics.SweepRepaired.Inc();
                }
            }
        }
    }

    [LoggerMessage(EventId = 1403, Level = LogLevel.Warning, Message = "Cluster sweep failed ({Reason}); tried again at the next tick")]
    private partial void LogSweepFailed(string reason);
}
