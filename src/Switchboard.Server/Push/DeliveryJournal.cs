using System.Collections.Concurrent;

namespace Switchboard.Server.Push;

/// <summary>One thing that happened on a message's way to one device.</summary>
internal sealed record JourneyStep(string User, int Device, long At, string What, string? Detail);

/// <summary>
/// What the push worker did for each message and device — pushed (and how the service answered, in how long), or
/// not pushed and why (online, muted, no registration, queue full) — for <c>GET …/messages/{seq}/journey</c>.
/// In memory and bounded (<c>Push:JournalEvents</c> messages, the oldest forgotten first): where a message stands
/// on sockets and in cursors comes from the store; this adds what the store does not know.
/// </summary>
internal sealed class DeliveryJournal(Microsoft.Extensions.Options.IOptions<PushOptions> options)
{
    private readonly ConcurrentDictionary<(string Conv, long Seq), List<JourneyStep>> _steps = new();
    private readonly ConcurrentQueue<(string Conv, long Seq)> _order = new();
    private readonly int _max = options.Value.JournalEvents;

    public void Record(string conv, long seq, JourneyStep step)
    {
        var list = _steps.GetOrAdd((conv, seq), key =>
        {
            _order.Enqueue(key);
            return [];
        });
        lock (list)
        {
            if (list.Count < 10_000)
            {
                list.Add(step);
            }
        }

        while (_steps.Count > _max && _order.TryDequeue(out var oldest))
        {
            _steps.TryRemove(oldest, out _);
        }
    }

    public List<JourneyStep> StepsOf(string conv, long seq)
    {
        if (!_steps.TryGetValue((conv, seq), out var list))
        {
            return [];
        }

        lock (list)
        {
            return [.. list];
        }
    }
}
