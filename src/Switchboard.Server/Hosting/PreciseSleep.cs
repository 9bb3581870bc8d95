using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Switchboard.Server.Hosting;

/// <summary>
/// Sleeps until a <see cref="Stopwatch"/> timestamp with tens of microseconds of precision, without spinning.
/// <see cref="Thread.Sleep(int)"/> counts whole milliseconds; the sequencer paces fsyncs a fraction of one apart.
/// On Linux the calling thread asks for a 1 µs timer slack (once) and sleeps with <c>nanosleep</c>; elsewhere it
/// sleeps a millisecond or yields.
/// </summary>
internal static class PreciseSleep
{
    private const int PrSetTimerSlack = 29; // linux/prctl.h

    [ThreadStatic]
    private static bool _prepared;

    public static void Until(long due)
    {
        while (true)
        {
            var remaining = due - Stopwatch.GetTimestamp();
            if (remaining <= 0)
            {
                return;
            }

            if (!OperatingSystem.IsLinux())
            {
                Thread.Sleep(remaining * 1000 / Stopwatch.Frequency >= 1 ? 1 : 0);
                continue;
            }

            if (!_prepared)
            {
                _prepared = true;
                _ = prctl(PrSetTimerSlack, 1, 0, 0, 0);
            }

            var nanoseconds = remaining * 1_000_000_000 / Stopwatch.Frequency;
            var request = new TimeSpec { Seconds = nanoseconds / 1_000_000_000, Nanoseconds = nanoseconds % 1_000_000_000 };
            _ = nanosleep(ref request, IntPtr.Zero);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    // DllImport rather than LibraryImport, as in NativeMemory: blittable arguments, and no unsafe code compiled.
#pragma warning disable SYSLIB1054, CA5392
    [DllImport("libc", EntryPoint = "nanosleep")]
    private static extern int nanosleep(ref TimeSpec request, IntPtr remaining);

    [DllImport("libc", EntryPoint = "prctl")]
    private static extern int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
#pragma warning restore SYSLIB1054, CA5392
}
