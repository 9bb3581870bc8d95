using System.Globalization;

namespace Switchboard.Bench;

/// <summary>Reads the server's persist batch-size histogram from /metrics, to report what group commit did.</summary>
internal sealed record BatchStats(double Count, double Sum, SortedDictionary<double, double> Buckets)
{
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
