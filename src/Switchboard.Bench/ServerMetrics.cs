using System.Globalization;

namespace Switchboard.Bench;

/// <summary>Reads the server's persist batch-size histogram from /metrics, to report what group commit did.</summary>
internal sealed record BatchStats(double Count, double Sum, SortedDictionary<double, double> Buckets)
{
    /// <summary>
    /// The histogram of every node added up (commits and batches are per node, so the sum is the cluster's); null
    /// when any node does not answer, since a delta over a missing node would be wrong.
    /// </summary>
    public static async Task<BatchStats?> ReadAsync(NodeClients nodes, CancellationToken cancellationToken)
    {
        var readings = await Task.WhenAll(nodes.All.Select(http => ReadAsync(http, cancellationToken)));
        if (readings.Length == 1 || readings.Any(r => r is null))
        {
            return readings.Length == 1 ? readings[0] : null;
        }

        double count = 0, sum = 0;
        var buckets = new SortedDictionary<double, double>();
        foreach (var reading in readings)
        {
            count += reading!.Count;
            sum += reading.Sum;
            foreach (var (bound, cumulative) in reading.Buckets)
            {
                buckets[bound] = buckets.GetValueOrDefault(bound) + cumulative;
            }
        }

        return new BatchStats(count, sum, buckets);
    }

    public static async Task<BatchStats?> ReadAsync(HttpClient http, CancellationToken cancellationToken)
    {
        var text = await ServerMetrics.GetTextAsync(http, cancellationToken);
        if (text is null)
        {
            return null;
        }

        double count = 0, sum = 0;
        var buckets = new SortedDictionary<double, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("switchboard_storage_batch_size_count ", StringComparison.Ordinal))
            {
                count = double.Parse(line.AsSpan(line.LastIndexOf(' ') + 1), CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("switchboard_storage_batch_size_sum ", StringComparison.Ordinal))
            {
                sum = double.Parse(line.AsSpan(line.LastIndexOf(' ') + 1), CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("switchboard_storage_batch_size_bucket{le=\"", StringComparison.Ordinal))
            {
                var start = line.IndexOf('"', StringComparison.Ordinal) + 1;
                var le = line[start..line.IndexOf('"', start)];
                var bound = le == "+Inf" ? double.PositiveInfinity : double.Parse(le, CultureInfo.InvariantCulture);
                buckets[bound] = double.Parse(line.AsSpan(line.LastIndexOf(' ') + 1), CultureInfo.InvariantCulture);
            }
        }

        return new BatchStats(count, sum, buckets);
    }

    /// <summary>What happened between two readings: commits, mean batch and the bucket bound holding the p50/p99.</summary>
    public static (double Commits, double Mean, double P50, double P99) Delta(BatchStats before, BatchStats after)
    {
        var commits = after.Count - before.Count;
        var mean = commits > 0 ? (after.Sum - before.Sum) / commits : 0;
        double At(double q)
        {
            foreach (var (bound, cumulative) in after.Buckets)
            {
                if (cumulative - before.Buckets.GetValueOrDefault(bound) >= q * commits)
                {
                    return bound;
                }
            }

            return double.PositiveInfinity;
        }

        return (commits, mean, At(0.5), At(0.99));
    }
}

/// <summary>Single readings of the server: one Prometheus sample, or a process's resident memory.</summary>
internal static class ServerMetrics
{
    /// <summary>The value of an unlabelled sample on /metrics (a gauge such as <c>switchboard_gateway_sockets</c>), or null.</summary>
    // Metrics are a side reading: a server too busy (or stopped) to answer within this costs the figure, not the run.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    /// <summary>The value of an unlabelled sample on /metrics (a gauge such as <c>switchboard_gateway_sockets</c>), or null.</summary>
    public static async Task<double?> ReadAsync(HttpClient http, string name, CancellationToken cancellationToken)
    {
        var text = await GetTextAsync(http, cancellationToken);
        foreach (var line in text?.Split('\n') ?? [])
        {
            if (line.Length > name.Length && line.StartsWith(name, StringComparison.Ordinal) && line[name.Length] == ' ')
            {
                return double.Parse(line.AsSpan(name.Length + 1), CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    /// <summary>
    /// The sample added up over every node (sockets, cache entries, bytes written: each node counts its own), or
    /// null when any node does not answer or lacks it. With one node, that node's value.
    /// </summary>
    public static async Task<double?> ReadSumAsync(NodeClients nodes, string name, CancellationToken cancellationToken)
    {
        var values = await Task.WhenAll(nodes.All.Select(http => ReadAsync(http, name, cancellationToken)));
        double sum = 0;
        foreach (var value in values)
        {
            if (value is not { } v)
            {
                return null;
            }

            sum += v;
        }

        return sum;
    }

    /// <summary>The /metrics text, or null when the server does not answer in time.</summary>
    public static async Task<string?> GetTextAsync(HttpClient http, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(Timeout);
        try
        {
            return await http.GetStringAsync("/metrics", deadline.Token);
        }
        catch (HttpRequestException)
        {
            return null;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>
    /// write_bytes of a process on this machine, from /proc/PID/io: bytes it caused to be written to storage (page
    /// cache writeback and direct writes), so WAL, flushes and compactions all count. Null when unreadable.
    /// </summary>
    // The kernel counts a page-cache folio each time a write makes it dirty, at the folio's size. Where the page
    // cache uses large folios (seen on Linux 6.18, ext4: an 8 KiB pwrite + fdatasync into a file already cached
    // counted 2 MiB, an 8 KiB append counted 8 KiB), a process that rewrites cached files after each sync, as
    // PostgreSQL does its preallocated WAL segments, reads far above the bytes it really wrote.
    public static long? DiskWriteBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/io"))
            {
                if (line.StartsWith("write_bytes:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(12).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>
    /// VmRSS of a process on this machine, in bytes, from /proc/PID/status; null when there is no such process (or
    /// no /proc). Resident memory is what the kernel charges, GC heap slack and native buffers included.
    /// </summary>
    public static long? RssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    var kib = line.AsSpan(6).Trim();
                    kib = kib.EndsWith("kB", StringComparison.Ordinal) ? kib[..^2].Trim() : kib;
                    return long.Parse(kib, NumberStyles.None, CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }
}

/// <summary>
/// Processes on this machine whose memory and disk writes a run reports: the server nodes of <c>--server-pid</c>,
/// or the store processes of <c>--store-pid</c> together with all their descendants (a PostgreSQL postmaster's
/// backends, WAL writer, checkpointer and background writer do the writing, not the postmaster). Descendants are
/// found anew at each reading by scanning /proc/*/stat for parent ids: backends come and go with connections.
/// </summary>
internal sealed class WatchedProcesses(IReadOnlyList<int> pids, bool descendants)
{
    public static readonly WatchedProcesses None = new([], false);

    /// <summary>The process ids given, in order.</summary>
    public IReadOnlyList<int> Pids => pids;

    public bool IsEmpty => pids.Count == 0;

    /// <summary>Processes the last <see cref="DiskWriteBytes"/> read: the ids given and, with descendants, their children found then.</summary>
    public int LastCount { get; private set; }

    /// <summary>The first id whose /proc/PID/status cannot be read (no such process), or null when all can.</summary>
    public int? FirstMissing()
    {
        foreach (var pid in pids)
        {
            if (ServerMetrics.RssBytes(pid) is null)
            {
                return pid;
            }
        }

        return null;
    }

    /// <summary>Resident memory of the ids given, added up (descendants not included: PostgreSQL's share one buffer pool); null when one is unreadable.</summary>
    public long? RssBytes()
    {
        if (pids.Count == 0)
        {
            return null;
        }

        long sum = 0;
        foreach (var pid in pids)
        {
            if (ServerMetrics.RssBytes(pid) is not { } rss)
            {
                return null;
            }

            sum += rss;
        }

        return sum;
    }

    /// <summary>Resident memory of each id given, by id, in <paramref name="unit"/> bytes (rounded to 0.1); unreadable ones left out.</summary>
    public Dictionary<string, double> RssPerProcess(double unit)
    {
        var each = new Dictionary<string, double>();
        foreach (var pid in pids)
        {
            if (ServerMetrics.RssBytes(pid) is { } rss)
            {
                each[pid.ToString(CultureInfo.InvariantCulture)] = Math.Round(rss / unit, 1);
            }
        }

        return each;
    }

    /// <summary>
    /// write_bytes added up over the ids given and, with descendants, every live descendant. A descendant that
    /// exits is not lost: when its parent reaps it the kernel adds its I/O counts to the parent's /proc/PID/io, so
    /// the sum only grows. Null when one of the ids given is unreadable.
    /// </summary>
    public long? DiskWriteBytes()
    {
        if (pids.Count == 0)
        {
            return null;
        }

        // Descendants first, the ids given last: one that exits in between is then counted twice (as itself and in
        // its parent), never missed, and a run's readings are seconds apart while backends live for the run.
        long sum = 0;
        var count = pids.Count;
        if (descendants)
        {
            var all = WithDescendants(pids);
            for (var i = pids.Count; i < all.Count; i++)
            {
                sum += ServerMetrics.DiskWriteBytes(all[i]) ?? 0; // gone since the scan: its bytes are its parent's now
            }

            count = all.Count;
        }

        foreach (var pid in pids)
        {
            if (ServerMetrics.DiskWriteBytes(pid) is not { } bytes)
            {
                return null;
            }

            sum += bytes;
        }

        LastCount = count;
        return sum;
    }

    /// <summary>The ids given, then every process whose parent chain leads to one of them (from /proc/*/stat).</summary>
    private static List<int> WithDescendants(IReadOnlyList<int> roots)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || ParentOf(pid) is not { } parent)
            {
                continue;
            }

            if (!children.TryGetValue(parent, out var list))
            {
                children[parent] = list = [];
            }

            list.Add(pid);
        }

        var all = new List<int>(roots);
        var seen = new HashSet<int>(roots);
        for (var i = 0; i < all.Count; i++)
        {
            foreach (var child in children.GetValueOrDefault(all[i]) ?? [])
            {
                if (seen.Add(child))
                {
                    all.Add(child);
                }
            }
        }

        return all;
    }

    /// <summary>The parent id from /proc/PID/stat (the field after the state, past the command name's closing parenthesis), or null.</summary>
    private static int? ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat.AsSpan(stat.LastIndexOf(')') + 1).Trim();
            var space = fields.IndexOf(' ');
            if (space < 0)
            {
                return null;
            }

            fields = fields[(space + 1)..];
            space = fields.IndexOf(' ');
            return int.TryParse(space < 0 ? fields : fields[..space], NumberStyles.None, CultureInfo.InvariantCulture, out var parent) ? parent : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null; // gone since the directory was listed
        }
    }
}

/// <summary>Kernel TCP counters of this machine, for a server on loopback.</summary>
internal static class KernelCounters
{
    /// <summary>
    /// TcpExt ListenOverflows from /proc/net/netstat: handshakes dropped because a listen socket's accept queue was
    /// full. Counted for every listener in this network namespace, so other traffic adds to it; null without /proc.
    /// A dropped handshake is retried by the kernel after a second or more, which shows as a latency step.
    /// </summary>
    public static long? ListenOverflows()
    {
        try
        {
            string[]? names = null;
            foreach (var line in File.ReadLines("/proc/net/netstat"))
            {
                if (!line.StartsWith("TcpExt:", StringComparison.Ordinal))
                {
                    continue;
                }

                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (names is null)
                {
                    names = fields; // the first TcpExt line names the columns, the second holds the values
                    continue;
                }

                var index = Array.IndexOf(names, "ListenOverflows");
                return index > 0 && index < fields.Length && long.TryParse(fields[index], NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : null;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>How much a counter grew, or null when either reading is missing.</summary>
    public static long? Delta(long? before, long? after) => before is { } b && after is { } a ? a - b : null;
}
