namespace Switchboard.Client;

/// <summary>A send waiting for its ack: resent with the same cid after every reconnect until acked.</summary>
/// <param name="Cid">The client id of the send.</param>
/// <param name="Frame">The frame as JSON, sent again as is.</param>
/// <param name="Order">Position in the outbox: resends keep the original order.</param>
public sealed record PendingSend(string Cid, string Frame, long Order);

/// <summary>What a client remembers between connections (and, if persistent, between runs).</summary>
public interface IClientStateStore
{
    /// <summary>The last seq delivered to the application in <paramref name="conv"/>, or null if none yet.</summary>
    ValueTask<long?> GetLastSeqAsync(string conv);

    /// <summary>Records the last seq delivered to the application.</summary>
    ValueTask SetLastSeqAsync(string conv, long seq);

    /// <summary>Every unacked send, in order.</summary>
    ValueTask<IReadOnlyList<PendingSend>> LoadOutboxAsync();

    /// <summary>Adds a send to the outbox.</summary>
    ValueTask AddPendingAsync(PendingSend send);

    /// <summary>Removes an acked (or refused) send.</summary>
    ValueTask RemovePendingAsync(string cid);
}

/// <summary>The default state: in memory, gone with the process.</summary>
public sealed class InMemoryClientStateStore : IClientStateStore
{
    private readonly Dictionary<string, long> _lastSeq = new(StringComparer.Ordinal);
    private readonly SortedDictionary<long, PendingSend> _outbox = [];
    private readonly Dictionary<string, long> _orderOf = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <inheritdoc />
    public ValueTask<long?> GetLastSeqAsync(string conv)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(_lastSeq.TryGetValue(conv, out var seq) ? seq : (long?)null);
        }
    }

    /// <inheritdoc />
    public ValueTask SetLastSeqAsync(string conv, long seq)
    {
        lock (_lock)
        {
            _lastSeq[conv] = seq;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<PendingSend>> LoadOutboxAsync()
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<PendingSend>>([.. _outbox.Values]);
        }
    }

    /// <inheritdoc />
    public ValueTask AddPendingAsync(PendingSend send)
    {
        lock (_lock)
        {
            _outbox[send.Order] = send;
            _orderOf[send.Cid] = send.Order;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask RemovePendingAsync(string cid)
    {
        lock (_lock)
        {
            if (_orderOf.Remove(cid, out var order))
            {
                _outbox.Remove(order);
            }
        }

        return ValueTask.CompletedTask;
    }
}
