using System.Runtime.InteropServices;

namespace Switchboard.Server.Hosting;

/// <summary>
/// Tells glibc's allocator to give large blocks back. Password hashing (Argon2id, 19 MiB a hash by default) and
/// RocksDB allocate big native blocks; glibc raises its mmap threshold after the first such block is freed, so
/// later ones come from per-thread arenas that keep the memory after the free: a burst of sign-ups left a server
/// tens of MB larger for good. A fixed threshold keeps every block over 128 KiB in its own mapping, returned to
/// the system when freed, and a cap on arenas keeps the rest from spreading over one arena per thread.
/// </summary>
internal static class NativeMemory
{
    private const int MallocTrimThreshold = -1; // M_TRIM_THRESHOLD
    private const int MallocMmapThreshold = -3; // M_MMAP_THRESHOLD
    private const int MallocArenaMax = -8; // M_ARENA_MAX

    public static void TuneAllocator()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = mallopt(MallocMmapThreshold, 128 * 1024); // fixed: no dynamic raise after a big free
            _ = mallopt(MallocTrimThreshold, 1024 * 1024); // give the top of the heap back beyond 1 MiB free
            _ = mallopt(MallocArenaMax, Math.Max(2, Environment.ProcessorCount * 2));
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc (musl has its own allocator): nothing to tune
        }
    }

    /// <summary>Returns the native heap's free pages to the system (glibc's <c>malloc_trim</c>); nothing elsewhere.</summary>
    public static void Trim()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = malloc_trim(0);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc
        }
    }

    // DllImport rather than LibraryImport: two ints need no marshalling, and the project compiles no unsafe code.
#pragma warning disable SYSLIB1054, CA5392
    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);
#pragma warning restore SYSLIB1054, CA5392
}
