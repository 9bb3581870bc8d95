using System.Collections.Concurrent;

namespace Switchboard.Server.Routing;

/// <summary>
/// The embedded router: a dictionary of small copy-on-write arrays, so delivery reads without locks. Connects and
/// disconnects take one lock, which makes "first device" and "last device" exact even when they race.
/// </summary>
internal sealed class InMemorySessionRouter : ISessionRouter
{
    private readonly ConcurrentDictionary<string, ISession[]> _byUser = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public (ISession? Replaced, bool First) Register(ISession session)
    {
        lock (_gate)
        {
            var current = _byUser.TryGetValue(session.User, out var found) ? found : [];
            ISession? replaced = null;
            var next = new List<ISession>(current.Length + 1);
            foreach (var existing in current)
            {
                if (existing.Device == session.Device)
                {
                    replaced = existing;
                }
                else
                {
                    next.Add(existing);
                }
            }

            next.Add(session);
            _byUser[session.User] = [.. next];
            if (replaced is null)
            {
                _count++;
            }

            return (replaced, current.Length == 0);
        }
    }

    public bool Unregister(ISession session)
    {
        lock (_gate)
        {
            var current = _byUser.TryGetValue(session.User, out var found) ? found : [];
            var index = Array.IndexOf(current, session);
            if (index < 0)
            {
                return false; // already replaced by a newer socket of the same device
            }

            _count--;
            if (current.Length == 1)
            {
                _byUser.TryRemove(session.User, out _);
                return true;
            }

            var next = new ISession[current.Length - 1];
            Array.Copy(current, 0, next, 0, index);
            Array.Copy(current, index + 1, next, index, current.Length - index - 1);
            _byUser[session.User] = next;
            return false;
        }
    }

    public IReadOnlyList<ISession> Sessions(string user) =>
        _byUser.TryGetValue(user, out var sessions) ? sessions : [];

    public ISession? Find(string user, int device)
    {
        foreach (var session in Sessions(user))
        {
            if (session.Device == device)
            {
                return session;
            }
        }

        return null;
    }

    public IReadOnlyList<ISession> All()
    {
        var all = new List<ISession>(Count);
        foreach (var (_, sessions) in _byUser)
        {
            all.AddRange(sessions);
        }

        return all;
    }
}
