using System.Globalization;

namespace Switchboard.Cli.Bench;

/// <summary>Reads the server's persist batch-size histogram from /metrics, to report what group commit did.</summary>
internal sealed record BatchStats(double Count, double Sum, SortedDictionary<double, double> Buckets)
{
    public static async Task<BatchStats?> ReadAsync(HttpClient http, CancellationToken cancellationToken)
    {
        try
        {
            var text = await http.GetStringAsync("/metrics", cancellationToken);
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
        catch (HttpRequestException)
        {
            return null;
        }
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
