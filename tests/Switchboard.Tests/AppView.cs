using System.Threading.Channels;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Tests;

/// <summary>What an application using the SDK sees: its messages, in the order they are handed to it.</summary>
internal static class AppView
{
    /// <summary>Collects the messages an application sees, in the order it sees them.</summary>
    public static (List<MsgFrame> Seen, Channel<MsgFrame> Arrivals, Task Pump) Collect(SwitchboardClient client, CancellationToken stop)
    {
        var seen = new List<MsgFrame>();
        var arrivals = Channel.CreateUnbounded<MsgFrame>();
        var pump = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in client.ReadEventsAsync(stop))
                {
                    if (e is MessageReceived { Message: var m })
                    {
                        lock (seen)
                        {
                            seen.Add(m);
                        }

                        arrivals.Writer.TryWrite(m);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);
        return (seen, arrivals, pump);
    }

    public static async Task WaitForAsync(Channel<MsgFrame> arrivals, Func<MsgFrame, bool> done)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            if (done(await arrivals.Reader.ReadAsync(timeout.Token)))
            {
                return;
            }
        }
    }
}
