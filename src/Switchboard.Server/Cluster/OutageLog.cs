namespace Switchboard.Server.Cluster;

/// <summary>
/// Says an outage once per interval, however many calls fail during it: a Redis or NATS that is away would
/// otherwise write a line per message.
/// </summary>
internal sealed class OutageLog(Action<string> log, long intervalMs = 10_000)
{
    private long _last = long.MinValue / 2;

    public void Failed(Exception ex)
    {
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _last);
        if (now - last > intervalMs && Interlocked.CompareExchange(ref _last, now, last) == last)
        {
            log(ex.Message);
        }
    }
}
