using System.Threading.Channels;
using NATS.Client.Core;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Cluster;

/// <summary>
/// Node-to-node hints over NATS core subjects (prefixed with the cluster's name): <c>{name}.node.{id}</c> for what is
/// meant for one node's sockets, and <c>{name}.all</c> for what every node must hear (a device unlinked, a presence change, a group changed). Nothing
/// here is needed for correctness: a node delivers from the store by cursor, and a lost hint is repaired by the
/// next one or by the sweep (<see cref="HeadWatch"/>). So sending never waits on the network: records queue in a
/// bounded channel (dropped, and counted, when it is full) and one task routes them in batches: one Redis round
/// trip to locate every recipient of the batch, then one NATS message per node.
/// </summary>
internal sealed partial class ClusterBus : IAsyncDisposable
{
    private const int MaxRecordsPerRound = 1024;
    private const int MaxMessageBytes = 512 * 1024;

    private readonly NatsConnection _nats;
    private readonly string _name;
    private readonly ClusterNode _node;
    private readonly RedisSessionRouter _locator;
    private readonly SwitchboardMetrics _metrics;
    private readonly ILogger<ClusterBus> _logger;
    private readonly Channel<(BusRecord Record, bool ToAll)> _outbound = Channel.CreateBounded<(BusRecord, bool)>(new BoundedChannelOptions(65_536)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    private readonly CancellationTokenSource _stopping = new();
    private Task? _routing;
    private readonly List<Task> _listening = [];

    public ClusterBus(ClusterNode node, Microsoft.Extensions.Options.IOptions<ClusterOptions> clusterOptions, RedisSessionRouter locator, SwitchboardMetrics metrics, ILogger<ClusterBus> logger)
    {
        var options = clusterOptions.Value;
        _outage = new OutageLog(LogBusFailed);
        _node = node;
        _name = options.Name;
        _locator = locator;
        _metrics = metrics;
        _logger = logger;
        _nats = new NatsConnection(new NatsOpts
        {
            Url = options.Nats,
            Name = $"switchboard-node-{node.Id}",
            RetryOnInitialConnect = true, // start without NATS; hints flow once it is there
            PublishTimeoutOnDisconnected = true, // a publish while NATS is away fails fast instead of waiting
            CommandTimeout = TimeSpan.FromSeconds(1),
            SubPendingChannelCapacity = 65_536,
            SubPendingChannelFullMode = BoundedChannelFullMode.DropNewest,
            MaxReconnectRetry = -1,
            ReconnectWaitMin = TimeSpan.FromMilliseconds(200),
            ReconnectWaitMax = TimeSpan.FromSeconds(2),
        });
        _nats.ConnectionOpened += Opened;
        _nats.MessageDropped += (_, _) =>
        {
            HintsLost?.Invoke();
            return ValueTask.CompletedTask;
        };
    }

    private string NodeSubject(int node) => $"{_name}.node.{node}";

    private bool _everConnected;

    private ValueTask Opened(object? sender, NatsEventArgs args)
    {
        if (_everConnected)
        {
            HintsLost?.Invoke(); // back after an outage: what was published meanwhile never arrived
            Volatile.Write(ref _owed, 1); // nor did what this node published (buffered by the client, or failed): the others sweep too
            Queue(new BusRecord(BusKind.HintsLost), toAll: true);
        }

        _everConnected = true;
        return ValueTask.CompletedTask;
    }

    private string AllSubject => $"{_name}.all";

    /// <summary>Queues a record for the nodes holding sockets of its users; never waits.</summary>
    public void Send(BusRecord record) => Queue(record, toAll: false);

    /// <summary>Queues a record for every other node; never waits.</summary>
    public void Broadcast(BusRecord record) => Queue(record, toAll: true);

    private void Queue(BusRecord record, bool toAll)
    {
        if (!_outbound.Writer.TryWrite((record, toAll)))
        {
            _metrics.BusDropped.Inc();
            Volatile.Write(ref _owed, 1);
        }
    }

    // What arrived, handed over to the receiving thread: a handler may read the store and wait for it (a group's
    // receipt aggregate loads on that thread), which must never happen on a socket's completion.
    private readonly Channel<BusRecord> _inbound = Channel.CreateBounded<BusRecord>(new BoundedChannelOptions(65_536)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    private Thread? _receiving;

    // 1 while hints this node should have published were not: the next message tells every node to sweep.
    private int _owed;

    // Messages numbered per subject this node publishes on, and the last number heard per (sender, subject).
    private readonly Dictionary<string, long> _numbers = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(int Origin, string Subject), long> _heard = new();

    /// <summary>Called when hints were (or may have been) lost: a message skipped, NATS back after an outage, a locator that could not be read.</summary>
    public Action? HintsLost { get; set; }

    /// <summary>Starts routing what is sent and hands what arrives for this node to <paramref name="receive"/>, in arrival order, on a thread of its own.</summary>
    public void Start(Func<BusRecord, ValueTask> receive)
    {
        _routing = Task.Run(RouteAsync);
        _receiving = new Thread(() => Receive(receive)) { IsBackground = true, Name = "switchboard-bus-receive" };
        _receiving.Start();
        foreach (var subject in new[] { NodeSubject(_node.Id), AllSubject })
        {
            _listening.Add(Task.Run(() => ListenAsync(subject)));
        }
    }

    private void Receive(Func<BusRecord, ValueTask> receive)
    {
        var reader = _inbound.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var record))
            {
                try
                {
                    var handled = receive(record);
                    if (!handled.IsCompletedSuccessfully)
                    {
                        handled.AsTask().GetAwaiter().GetResult();
                    }
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Failed(ex);
                }
            }
        }
    }

    private async Task ListenAsync(string subject)
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await foreach (var message in _nats.SubscribeAsync<byte[]>(subject, cancellationToken: _stopping.Token))
                {
                    if (message.Data is not { } data)
                    {
                        continue;
                    }

                    var records = BusCodec.Decode(data, out var origin, out var number);
                    if (origin == _node.Id)
                    {
                        continue; // this node's own broadcast
                    }

                    var last = _heard.GetValueOrDefault((origin, subject));
                    _heard[(origin, subject)] = number;
                    if (last > 0 && number != last + 1 && number != 1)
                    {
                        HintsLost?.Invoke(); // a message between them never arrived (number 1: the sender restarted)
                    }

                    foreach (var record in records)
                    {
                        if (record.Kind == BusKind.HintsLost)
                        {
                            HintsLost?.Invoke();
                            continue;
                        }

                        if (!_inbound.Writer.TryWrite(record))
                        {
                            _metrics.BusDropped.Inc(); // a hint lost here is repaired like one lost on the way
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Failed(ex);
                await Task.Delay(500, _stopping.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    private async Task RouteAsync()
    {
        var reader = _outbound.Reader;
        var round = new List<(BusRecord Record, bool ToAll)>(MaxRecordsPerRound);
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token))
            {
                round.Clear();
                while (round.Count < MaxRecordsPerRound && reader.TryRead(out var record))
                {
                    round.Add(record);
                }

                try
                {
                    await RouteRoundAsync(round);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Volatile.Write(ref _owed, 1);
                    Failed(ex); // these hints are lost; the store and the sweep stand in for them
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>One batch: locate every user named, then one message per node (split when large), in record order.</summary>
    private async Task RouteRoundAsync(List<(BusRecord Record, bool ToAll)> round)
    {
        var users = new HashSet<string>(StringComparer.Ordinal);
        var broadcast = new List<BusRecord>();
        if (Interlocked.Exchange(ref _owed, 0) == 1 && !round.Any(r => r.Record.Kind == BusKind.HintsLost))
        {
            broadcast.Add(new BusRecord(BusKind.HintsLost)); // sent again if this round fails too
        }

        foreach (var (record, toAll) in round)
        {
            if (toAll)
            {
                broadcast.Add(record);
            }
            else if (record.Users is { } named)
            {
                users.UnionWith(named);
            }
        }

        if (broadcast.Count > 0)
        {
            await PublishAsync(AllSubject, broadcast);
        }

        if (users.Count == 0)
        {
            return;
        }

        if (await _locator.LocateAsync(users) is not { } located)
        {
            // The locator cannot be read: every node hears everything meant for other nodes, and keeps what is for
            // its own sockets (their local delivery skips users who have none there). Costly, and only while Redis is away.
            await PublishAsync(AllSubject, [.. round.Where(r => !r.ToAll).Select(r => r.Record)]);
            return;
        }

        foreach (var (node, here) in located)
        {
            var onNode = new HashSet<string>(here, StringComparer.Ordinal);
            var records = new List<BusRecord>();
            foreach (var (record, toAll) in round)
            {
                if (toAll || record.Users is not { } named)
                {
                    continue;
                }

                var mine = named.Where(onNode.Contains).ToArray();
                if (mine.Length > 0)
                {
                    records.Add(record with { Users = mine });
                }
            }

            await PublishAsync(NodeSubject(node), records);
        }
    }

    private async Task PublishAsync(string subject, List<BusRecord> records)
    {
        var start = 0;
        var size = 0;
        for (var i = 0; i < records.Count; i++)
        {
            size += (records[i].Frame?.Length ?? 0) + 64 + ((records[i].Users?.Count ?? 0) * 24);
            if (size >= MaxMessageBytes || i == records.Count - 1)
            {
                long number;
                lock (_numbers)
                {
                    _numbers[subject] = number = _numbers.GetValueOrDefault(subject) + 1;
                }

                var payload = BusCodec.Encode(_node.Id, number, records.GetRange(start, i - start + 1));
                await PublishOneAsync(subject, payload);
                _metrics.BusSent.Inc();
                start = i + 1;
                size = 0;
            }
        }
    }

    /// <summary>
    /// One publish, given up after <see cref="PublishTimeout"/>: the client may wait for a connection that is gone
    /// (and keep waiting after it is back), and a routing task stuck there would carry no hint again.
    /// </summary>
    private async Task PublishOneAsync(string subject, byte[] payload)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        timeout.CancelAfter(PublishTimeout);
        try
        {
            await _nats.PublishAsync(subject, payload, cancellationToken: timeout.Token).AsTask().WaitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            throw new TimeoutException($"publishing to NATS took over {PublishTimeout.TotalSeconds:0} s");
        }
    }

    private static readonly TimeSpan PublishTimeout = TimeSpan.FromSeconds(2);

    private void Failed(Exception ex) => _outage.Failed(ex);

    private readonly OutageLog _outage;

    [LoggerMessage(EventId = 1402, Level = LogLevel.Warning, Message = "NATS unavailable ({Reason}); deliveries to other nodes come from the store until it is back")]
    private partial void LogBusFailed(string reason);

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _outbound.Writer.TryComplete();
        _inbound.Writer.TryComplete();
        await _stopping.CancelAsync();
        foreach (var task in _listening.Append(_routing ?? Task.CompletedTask))
        {
            try
            {
                await task.WaitAsync(TimeSpan.FromSeconds(2));
            }
            catch (Exception)
            {
            }
        }

        await _nats.DisposeAsync();
        _stopping.Dispose();
    }
}
