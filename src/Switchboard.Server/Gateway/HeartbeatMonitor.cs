using Microsoft.Extensions.Options;
using Switchboard.Protocol;

namespace Switchboard.Server.Gateway;

/// <summary>
/// One sweep for all sockets (no timer per socket): a socket silent for three heartbeats is closed with 1001.
/// </summary>
internal sealed class HeartbeatMonitor(ConnectionTable connections, IOptions<GatewayOptions> options) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var heartbeatMs = options.Value.HeartbeatSeconds * 1000L;
        // Sweep four times per heartbeat: a silent socket is closed at most a quarter heartbeat late.
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Max(250, heartbeatMs / 4)));
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var now = Environment.TickCount64;
            foreach (var connection in connections.All())
            {
                if (now - connection.LastTraffic > 3 * heartbeatMs)
                {
                    connection.Close(CloseCodes.SilentTooLong, "silent for three heartbeats");
                }
            }
        }
    }
}
