using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>What every workload shares: latency histograms, their percentiles, and printing the result.</summary>
internal static class Report
{
    /// <summary>
    /// A latency histogram in TimeSpan ticks. Ten minutes of range, so a stalled run records its outliers instead of
    /// throwing from RecordValue.
    /// </summary>
    public static LongHistogram Histogram() => new(TimeStamp.Minutes(10), 3);

    /// <summary>Stopwatch ticks to HdrHistogram's TimeSpan ticks.</summary>
    public static long Ticks(long stopwatchTicks) => stopwatchTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency;

    /// <summary>Records a Stopwatch interval; histograms are not thread-safe and every workload records from receive loops.</summary>
    public static void Record(LongHistogram histogram, long stopwatchTicks)
    {
        var ticks = Math.Clamp(Ticks(stopwatchTicks), 0, histogram.HighestTrackableValue);
        lock (histogram)
        {
            histogram.RecordValue(ticks);
        }
    }

    /// <summary>p50, p99, p99.9 and max in milliseconds (zeros for an empty histogram).</summary>
    public static Dictionary<string, double> Percentiles(LongHistogram histogram)
    {
        lock (histogram)
        {
            double Ms(double percentile) => Math.Round(histogram.TotalCount == 0 ? 0 : histogram.GetValueAtPercentile(percentile) / (double)TimeSpan.TicksPerMillisecond, 3);
            return new Dictionary<string, double>
            {
                ["p50"] = Ms(50),
                ["p99"] = Ms(99),
                ["p999"] = Ms(99.9),
                ["max"] = Ms(100),
            };
        }
    }

    /// <summary>Milliseconds between two Stopwatch timestamps, rounded for a report.</summary>
    public static double Ms(long fromTimestamp, long toTimestamp) => Math.Round(Stopwatch.GetElapsedTime(fromTimestamp, toTimestamp).TotalMilliseconds, 1);

    /// <summary>One JSON object on stdout, or one key/value line per entry (a two-column table).</summary>
    public static void Print(Dictionary<string, object?> report, bool json)
    {
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, BenchJson.Default.DictionaryStringObject));
            return;
        }

        var width = Math.Max(18, report.Keys.Max(k => k.Length) + 1);
        foreach (var (key, value) in report)
        {
            var text = value switch
            {
                Dictionary<string, double> p => string.Join("  ", p.Select(kv => $"{kv.Key} {kv.Value.ToString("#,0.###", CultureInfo.InvariantCulture)}")),
                double d => d.ToString("#,0.###", CultureInfo.InvariantCulture),
                long l => l.ToString("N0", CultureInfo.InvariantCulture),
                int i => i.ToString("N0", CultureInfo.InvariantCulture),
                bool b => b ? "true" : "false",
                null => "-",
                _ => Convert.ToString(value, CultureInfo.InvariantCulture),
            };
            Console.WriteLine($"{key.PadRight(width)}{text}");
        }
    }
}

/// <summary>Source-generated JSON for reports; a report carrying a new kind of value needs its type listed here.</summary>
[JsonSerializable(typeof(Dictionary<string, object?>))]
[JsonSerializable(typeof(Dictionary<string, double>))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(double))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(bool))]
internal sealed partial class BenchJson : JsonSerializerContext;
