using Microsoft.Extensions.Options;

namespace Switchboard.Server.Hosting;

/// <summary>
/// Gives memory back to the system once a burst is over. A server that goes quiet allocates nothing, so nothing
/// triggers a collection: the garbage of the burst (sign-up requests, handshakes, a reconnect storm's replays)
/// stays resident, and so do freed blocks of the native heap. Every two seconds this looks at how much the process
/// allocated: when a period allocated less than 1 MiB after busy periods (1 MiB or more each) had allocated
/// <see cref="ServerOptions.IdleTrimAfterMegabytes"/> MiB since the last trim, it runs one aggressive collection (compacting, decommitting free
/// regions) and a <c>malloc_trim</c>. A busy server never qualifies, so it never pauses for this; a quiet one
/// pauses once per burst for a few tens of milliseconds.
/// </summary>
internal sealed class IdleMemoryTrim(IOptions<ServerOptions> options) : BackgroundService
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(2);
    private const long QuietBytes = 1 << 20;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var burst = (long)options.Value.IdleTrimAfterMegabytes << 20;
        if (burst == 0)
        {
            return;
        }

        var last = GC.GetTotalAllocatedBytes();
        var sinceTrim = 0L;
        using var timer = new PeriodicTimer(Period);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var now = GC.GetTotalAllocatedBytes();
            var period = now - last;
            last = now;
            if (period >= QuietBytes)
            {
                sinceTrim += period; // a trickle of light traffic never adds up to a burst
                continue;
            }

            if (sinceTrim >= burst)
            {
                GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                NativeMemory.Trim();
                sinceTrim = 0;
                last = GC.GetTotalAllocatedBytes();
            }
        }
    }
}
