using System.Diagnostics.Metrics;

namespace Switchboard.Server.Hosting;

/// <summary>The one <c>Switchboard</c> meter and its instruments, exported on /metrics.</summary>
internal sealed class SwitchboardMetrics : IDisposable
{
    public const string MeterName = "Switchboard";
    private readonly Meter _meter = new(MeterName);
    private long _openSockets;

    public SwitchboardMetrics()
    {
        _meter.CreateObservableGauge("switchboard.gateway.sockets", () => Volatile.Read(ref _openSockets), description: "Open authenticated WebSockets.");
        Accepted = _meter.CreateCounter<long>("switchboard.messaging.accepted", description: "Events made durable and acked (not counting duplicates).");
        Duplicates = _meter.CreateCounter<long>("switchboard.messaging.duplicates", description: "Sends answered with dup: true.");
        Rejected = _meter.CreateCounter<long>("switchboard.messaging.rejected", description: "Commands refused with an error code.");
        BatchSize = _meter.CreateHistogram<int>("switchboard.storage.batch_size", description: "Commands per group commit.");
        PersistLatency = _meter.CreateHistogram<double>("switchboard.storage.persist_seconds", unit: "s", description: "Time from BEGIN to durable COMMIT of one group commit.");
        DeliveryLatency = _meter.CreateHistogram<double>("switchboard.messaging.delivery_seconds", unit: "s", description: "Time from a send frame's arrival to its msg frame being written to a recipient socket.");
        SlowClosed = _meter.CreateCounter<long>("switchboard.gateway.slow_closed", description: "Sockets closed with 4002 because their outbound queue filled.");
    }

    public Counter<long> Accepted { get; }
    public Counter<long> Duplicates { get; }
    public Counter<long> Rejected { get; }
    public Histogram<int> BatchSize { get; }
    public Histogram<double> PersistLatency { get; }
    public Histogram<double> DeliveryLatency { get; }
    public Counter<long> SlowClosed { get; }

    public void SocketOpened() => Interlocked.Increment(ref _openSockets);

    public void SocketClosed() => Interlocked.Decrement(ref _openSockets);

    public void Dispose() => _meter.Dispose();
}
