using Switchboard.Server.Messaging;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Switchboard.Server.Delivery;

namespace Switchboard.Server.Fanout;

/// <summary>
/// The embedded fanout: small recipient lists are delivered inline (a few dictionary lookups and queue writes);
/// large ones go to a bounded channel per worker. A conversation always hashes to the same worker, and while a
/// worker has work queued every event of its conversations goes through it too, so order holds per socket.
/// </summary>
internal sealed partial class ChannelFanoutQueue : IFanoutQueue, IDisposable
{
    private readonly ILocalSessions _sessions;
    private readonly FanoutOptions _options;
    private readonly ILogger<ChannelFanoutQueue> _logger;
    private readonly Worker[] _workers;

    public ChannelFanoutQueue(ILocalSessions sessions, IOptions<FanoutOptions> options, ILogger<ChannelFanoutQueue> logger)
    {
        _sessions = sessions;
        _options = options.Value;
        _logger = logger;
        _workers = new Worker[_options.Workers];
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Worker(this, _options.QueueCapacity);
        }
    }

    public void Deliver(in EventDelivery item)
    {
        var worker = _workers[(int)((uint)StringComparer.Ordinal.GetHashCode(item.Conv) % (uint)_workers.Length)];
        if (item.Recipients.Count <= _options.SyncThreshold && Volatile.Read(ref worker.Pending) == 0)
        {
            Send(item, 0, item.Recipients.Count, inline: false); // on the sequencer's thread: never write sockets here
            return;
        }

        Interlocked.Increment(ref worker.Pending);
        var write = worker.Queue.Writer.WriteAsync(item);
        if (!write.IsCompletedSuccessfully)
        {
            write.AsTask().GetAwaiter().GetResult(); // queue full: the writer waits, memory stays bounded
        }
    }

    /// <summary>Hands the frame to the online devices of recipients [from, to).</summary>
    private void Send(in EventDelivery item, int from, int to, bool inline)
    {
        var pairwise = E2eePayload.MayBePairwise(item.Frame); // each device is handed its own ciphertext only
        for (var i = from; i < to; i++)
        {
            var user = item.Recipients[i];
            foreach (var session in _sessions.Sessions(user))
            {
                if (session.Device == item.ExceptDevice && user == item.ExceptUser)
                {
                    continue;
                }

                session.SendEvent(item.Conv, item.Seq, pairwise ? E2eePayload.FrameForDevice(item.Frame, user, session.Device) : item.Frame, item.ReceivedAt, inline);
            }
        }
    }

    public void Dispose()
    {
        foreach (var worker in _workers)
        {
            worker.Queue.Writer.TryComplete();
        }
    }

    private sealed class Worker
    {
        public readonly Channel<EventDelivery> Queue;
        public int Pending;
        private readonly ChannelFanoutQueue _owner;

        public Worker(ChannelFanoutQueue owner, int capacity)
        {
            _owner = owner;
            Queue = Channel.CreateBounded<EventDelivery>(new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = true });
            _ = Task.Run(RunAsync);
        }

        private async Task RunAsync()
        {
            var reader = Queue.Reader;
            while (await reader.WaitToReadAsync())
            {
                while (reader.TryRead(out var item))
                {
                    try
                    {
                        // Page through the members so lookups stay batched (one round trip per page with a
                        // distributed router) and other workers get the cores in between.
                        for (var from = 0; from < item.Recipients.Count; from += _owner._options.PageSize)
                        {
                            _owner.Send(item, from, Math.Min(item.Recipients.Count, from + _owner._options.PageSize), inline: true);
                        }
                    }
                    catch (Exception ex)
                    {
                        _owner.LogFanoutFailed(ex, item.Conv, item.Seq);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref Pending);
                    }
                }
            }
        }
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "Fanout of {Conv}#{Seq} failed; receivers recover it on reconnect or sync")]
    private partial void LogFanoutFailed(Exception exception, string conv, long seq);
}
