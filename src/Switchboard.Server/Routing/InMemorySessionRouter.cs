namespace Switchboard.Server.Routing;

/// <summary>
/// The embedded router: every device is on this node. A dictionary from user to a small array of (device,
/// connection) pairs; adds and removes take one lock, which makes "first device" and "last device" exact when
/// connects and disconnects race.
/// </summary>
internal sealed class InMemorySessionRouter : ISessionRouter
{
    private readonly Dictionary<string, (int Device, long Connection)[]> _byUser = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ValueTask<bool> AddAsync(string user, int device, long connectionId)
    {
        lock (_gate)
        {
            var current = _byUser.GetValueOrDefault(user) ?? [];
            var next = new List<(int, long)>(current.Length + 1) { (device, connectionId) };
            var replaced = false;
            foreach (var entry in current)
            {
                if (entry.Device == device)
                {
                    replaced = true; // a newer connection of the same device takes the entry over
                }
                else
                {
                    next.Add(entry);
                }
            }

            _byUser[user] = [.. next];
            if (!replaced)
            {
                _count++;
            }

            return ValueTask.FromResult(current.Length == 0);
        }
    }

    public ValueTask<bool> RemoveAsync(string user, int device, long connectionId)
    {
        lock (_gate)
        {
            if (!_byUser.TryGetValue(user, out var current))
            {
                return ValueTask.FromResult(false);
            }

            var index = Array.IndexOf(current, (device, connectionId));
            if (index < 0)
            {
                return ValueTask.FromResult(false); // already replaced by a newer connection of the same device
            }

            _count--;
            if (current.Length == 1)
            {
                _byUser.Remove(user);
                return ValueTask.FromResult(true);
            }

            _byUser[user] = [.. current[..index], .. current[(index + 1)..]];
            return ValueTask.FromResult(false);
        }
    }

    public ValueTask<bool> IsOnlineAsync(string user)
    {
        lock (_gate)
        {
            return ValueTask.FromResult(_byUser.ContainsKey(user));
        }
    }
}
