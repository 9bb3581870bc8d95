using Prometheus;

namespace Switchboard.Server.Hosting;

/// <summary>
/// The server's instruments, exported on /metrics in Prometheus text. Each server instance has its own registry,
/// so several servers in one process (tests) never mix their figures. Names are
/// <c>switchboard_&lt;capability&gt;_&lt;thing&gt;</c>.
/// </summary>
internal sealed class SwitchboardMetrics
{
    private static readonly double[] LatencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    public SwitchboardMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        DotNetStats.Register(Registry);
        var factory = Metrics.WithCustomRegistry(Registry);
        Sockets = factory.CreateGauge("switchboard_gateway_sockets", "Open authenticated WebSockets.");
        Accepted = factory.CreateCounter("switchboard_messaging_accepted_total", "Events made durable and acked (not counting duplicates).");
        Duplicates = factory.CreateCounter("switchboard_messaging_duplicates_total", "Sends answered with dup: true.");
        Rejected = factory.CreateCounter("switchboard_messaging_rejected_total", "Commands refused with an error code.");
        BusSent = factory.CreateCounter("switchboard_cluster_bus_messages_total", "NATS messages this node published to other nodes (cluster mode).");
        E2eeDecryptFailures = factory.CreateCounter("switchboard_e2ee_decrypt_failures_total", "Messages a device reported it could not decrypt (decrypt_failed; no content).");
        E2eeResends = factory.CreateCounter("switchboard_e2ee_resends_total", "Messages sent again to one device on a new session after it could not decrypt them (sessions reset).");
        E2eePrekeysLow = factory.CreateCounter("switchboard_e2ee_prekeys_low_total", "Times a device was told its one-time prekeys are running low (keys_low).");
        BusDropped = factory.CreateCounter("switchboard_cluster_bus_dropped_total", "Hints for other nodes dropped because the outbound queue was full; the store and the sweep stand in for them.");
        SweepsEarly = factory.CreateCounter("switchboard_cluster_sweeps_early_total", "Sweeps run early because hints may have been lost (a bus message skipped, NATS or Redis back after an outage, another node unable to publish, a hole in a conversation past its grace).");
        SweepRepaired = factory.CreateCounter("switchboard_cluster_sweep_repaired_total", "Events the sweep delivered from the store because no hint announced them (a lost bus message).");
        Conflicts = factory.CreateCounter("switchboard_messaging_head_conflicts_total", "Batch parts decided again because another node appended to the same conversation first (cluster mode).");
        BatchSize = factory.CreateHistogram("switchboard_storage_batch_size", "Commands per group commit.", new HistogramConfiguration
        {
            Buckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
        });
        PersistLatency = factory.CreateHistogram("switchboard_storage_persist_seconds", "Time from BEGIN to durable COMMIT of one group commit.", new HistogramConfiguration { Buckets = LatencyBuckets });
        DeliveryLatency = factory.CreateHistogram("switchboard_messaging_delivery_seconds", "Time from a send frame's arrival to its msg frame being written to a recipient socket.", new HistogramConfiguration { Buckets = LatencyBuckets });
        AbuseRefused = factory.CreateCounter("switchboard_abuse_refused_total", "Requests refused with 429 by a limit on sign-ups, logins, device links, groups or password hashing.", "limit");
        GatewayRefused = factory.CreateCounter("switchboard_gateway_refused_total", "Connections refused before anything of them was read: over the bound on unauthenticated connections (in all or from one address) or Kestrel's connection limits.", "reason");
        PushSent = factory.CreateCounter("switchboard_push_sent_total", "Pushes handed to a push service, by provider and result (ok, gone: the registration was removed, failed).", "provider", "result");
        PushDropped = factory.CreateCounter("switchboard_push_dropped_total", "Events not turned into pushes because the push queue was full.");
        BadFrames = factory.CreateCounter("switchboard_gateway_bad_frames_total", "Frames that did not parse (bad JSON, wrong types, a key given twice, invalid UTF-16), answered with bad_frame.");
        SlowClosed = factory.CreateCounter("switchboard_gateway_slow_closed_total", "Sockets closed with 4002 because their outbound queue filled.");
        _factory = factory;
        var diskWrites = factory.CreateGauge("switchboard_process_disk_write_bytes", "Bytes this process caused to be written to storage (write_bytes of /proc/self/io): log, flushes and compactions.");
        Registry.AddBeforeCollectCallback(() =>
        {
            if (ProcessDiskWriteBytes() is { } bytes)
            {
                diskWrites.Set(bytes);
            }

            foreach (var observe in _observed)
            {
                try
                {
                    observe();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // a reading that fails (the store closing) is skipped this time
                }
            }
        });
    }

    private readonly MetricFactory _factory;
    private readonly List<Action> _observed = [];

    /// <summary>A gauge read when /metrics is scraped (sizes of caches, the store's memory and bytes written).</summary>
    public void Observe(string name, string help, Func<double> read)
    {
        var gauge = _factory.CreateGauge(name, help);
        lock (_observed)
        {
            _observed.Add(() => gauge.Set(read()));
        }
    }

    /// <summary>write_bytes of /proc/self/io; null where there is no such file.</summary>
    private static long? ProcessDiskWriteBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/io"))
            {
                if (line.StartsWith("write_bytes:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(12).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    public CollectorRegistry Registry { get; }
    public Gauge Sockets { get; }
    public Counter Accepted { get; }
    public Counter Duplicates { get; }
    public Counter Rejected { get; }
    public Counter Conflicts { get; }
    public Counter BusSent { get; }
    public Counter BusDropped { get; }

    public Counter E2eeDecryptFailures { get; }

    public Counter E2eeResends { get; }

    public Counter E2eePrekeysLow { get; }
    public Counter SweepRepaired { get; }
    public Counter SweepsEarly { get; }
    public Histogram BatchSize { get; }
    public Histogram PersistLatency { get; }
    public Histogram DeliveryLatency { get; }
    public Counter SlowClosed { get; }

    public Counter AbuseRefused { get; }

    public Counter BadFrames { get; }

    public Counter GatewayRefused { get; }

    public Counter PushSent { get; }

    public Counter PushDropped { get; }

    public void SocketOpened() => Sockets.Inc();

    public void SocketClosed() => Sockets.Dec();
}
