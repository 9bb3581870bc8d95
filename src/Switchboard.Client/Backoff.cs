namespace Switchboard.Client;

/// <summary>Reconnect delays: "full jitter" exponential backoff, so many clients dropped at once do not return at once.</summary>
internal static class Backoff
{
    /// <summary>
    /// A delay drawn uniformly from [0, min(max, base × 2^attempt)] (attempt 0 is the first retry).
    /// </summary>
    public static TimeSpan Delay(int attempt, TimeSpan baseDelay, TimeSpan maxDelay, Random? random = null)
    {
        var ceiling = Math.Min(maxDelay.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 30)));
        return TimeSpan.FromMilliseconds((random ?? Random.Shared).NextDouble() * ceiling);
    }
}
