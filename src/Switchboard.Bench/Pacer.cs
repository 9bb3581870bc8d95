using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Switchboard.Bench;

/// <summary>
/// Waits until a <see cref="Stopwatch"/> timestamp with about ten microseconds of precision, without spinning.
/// Timers and <c>Task.Delay</c> wake at best every millisecond, which turns an offered rate of 10,000/s into
/// bursts of ten or more, and a burst measures the generator's queue rather than the server's latency. On Linux
/// the pacing thread asks for a 1 µs timer slack and sleeps with <c>nanosleep</c>; elsewhere it yields.
/// </summary>
internal static partial class Pacer
{
    private const int PrSetTimerSlack = 29; // linux/prctl.h

    /// <summary>Call once on the thread that will pace.</summary>
    public static void PrepareThread()
    {
        if (OperatingSystem.IsLinux())
        {
            _ = Prctl(PrSetTimerSlack, 1, 0, 0, 0);
        }
    }

    public static void WaitUntil(long due)
    {
        while (true)
        {
            var remaining = due - Stopwatch.GetTimestamp();
            if (remaining <= 0)
            {
                return;
            }

            if (OperatingSystem.IsLinux())
            {
                var nanoseconds = remaining * 1_000_000_000 / Stopwatch.Frequency;
                var request = new TimeSpec { Seconds = nanoseconds / 1_000_000_000, Nanoseconds = nanoseconds % 1_000_000_000 };
                _ = NanoSleep(in request, IntPtr.Zero);
            }
            else
            {
                Thread.Sleep(remaining * 1000 / Stopwatch.Frequency >= 2 ? 1 : 0);
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "nanosleep")]
    private static partial int NanoSleep(in TimeSpec request, IntPtr remaining);

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
}
