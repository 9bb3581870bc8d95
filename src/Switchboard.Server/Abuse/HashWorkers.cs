using System.Collections.Concurrent;
using System.Threading.RateLimiting;

namespace Switchboard.Server.Abuse;

/// <summary>
/// Where password hashes are computed: a few threads of their own, never the thread pool's. An Argon2id hash holds
/// its thread for tens of milliseconds; on pool threads, a flood of logins would hold every pool thread and each
/// socket's next step would wait for the pool to grow (half a second at a time). Admission is a
/// <see cref="ConcurrencyLimiter"/>: <c>HashConcurrency</c> at once, <c>HashQueue</c> waiting, the rest refused.
/// </summary>
internal sealed class HashWorkers : IDisposable
{
    private readonly ConcurrencyLimiter _admission;
    private readonly BlockingCollection<Action> _work = new(new ConcurrentQueue<Action>());
    private readonly Thread[] _threads;

    public HashWorkers(int concurrency, int queue)
    {
        _admission = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = concurrency,
            QueueLimit = queue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
        _threads = new Thread[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = "password hashing" };
            _threads[i].Start();
        }
    }

    public int Running => _threads.Length - (int)(_admission.GetStatistics()?.CurrentAvailablePermits ?? 0);

    public long Queued => _admission.GetStatistics()?.CurrentQueuedCount ?? 0;

    /// <summary>Runs <paramref name="work"/> on a hashing thread; <c>Admitted</c> is false when the queue was full.</summary>
    public async ValueTask<(bool Admitted, T Result)> RunAsync<T>(Func<T> work, CancellationToken cancellationToken)
    {
        using var lease = await _admission.AcquireAsync(1, cancellationToken);
        if (!lease.IsAcquired)
        {
            return (false, default!);
        }

        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try
            {
                done.SetResult(work());
            }
            catch (Exception ex)
            {
                done.SetException(ex);
            }
        }, CancellationToken.None);
        return (true, await done.Task);
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        _admission.Dispose();
    }

    private void Run()
    {
        foreach (var item in _work.GetConsumingEnumerable())
        {
            item();
        }
    }
}
