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
/// knows of; every <see cref="ClusterOptions.SweepSeconds"/> the sweep reads those conversations' heads from the
/// store in one query per shard, and a head past what this node knows (by events older than a grace of two
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

    private sealed class Entry(long seq)
    {
        public long Seq = seq;
        public long Heard = Environment.TickCount64;
    }

    public int Count => _known.Count;

    /// <summary>This node delivered, or heard of, the conversation's event at <paramref name="seq"/>.</summary>
    public void Saw(string conv, long seq)
    {
        var entry = _known.GetOrAdd(conv, static (_, s) => new Entry(s), seq);
        entry.Heard = Environment.TickCount64;
        long current;
        while ((current = Volatile.Read(ref entry.Seq)) < seq && Interlocked.CompareExchange(ref entry.Seq, seq, current) != current)
        {
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

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Value.SweepSeconds));
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await SweepAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogSweepFailed(ex.Message); // a shard away: tried again at the next tick
            }
        }
    }

    /// <summary>One pass: every watched conversation's head against what this node knows.</summary>
    public async Task SweepAsync(CancellationToken cancellationToken)
    {
        var convs = _known.Keys.ToList();
        if (convs.Count == 0)
        {
            return;
        }

        var heads = await store.GetLastSeqsAsync(convs, cancellationToken);
        foreach (var (conv, head) in heads)
        {
            if (!_known.TryGetValue(conv, out var entry) || Volatile.Read(ref entry.Seq) >= head)
            {
                continue;
            }

            var from = Volatile.Read(ref entry.Seq);
            var members = Names.TryParseDirect(conv, out var a, out var b) ? [a, b] : (await groups.GetAsync(conv, cancellationToken))?.Users;
            if (members is null || !members.Any(m => sessions.Sessions(m).Length > 0))
            {
                Saw(conv, head); // nobody here to tell: their devices catch up from their cursors when they connect
                continue;
            }

            var settled = time.GetUtcNow().ToUnixTimeMilliseconds() - GraceMs;
            var missed = await store.ReadAfterAsync(conv, from, head, MaxRepairPerConversation, cancellationToken);
            foreach (var stored in missed)
            {
                if (stored.Ts > settled)
                {
                    break;
                }

                await local.SendEventAsync(new EventDelivery(conv, stored.Seq, Messaging.Frames.Event(stored), members, null, 0, 0));
                metrics.SweepRepaired.Inc();
                Saw(conv, stored.Seq);
            }
        }
    }

    [LoggerMessage(EventId = 1403, Level = LogLevel.Warning, Message = "Cluster sweep failed ({Reason}); tried again at the next tick")]
    private partial void LogSweepFailed(string reason);
}
