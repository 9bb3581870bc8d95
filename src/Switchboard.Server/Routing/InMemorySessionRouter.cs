using System.Collections.Concurrent;

namespace Switchboard.Server.Routing;

/// <summary>
/// The embedded router: a dictionary of small copy-on-write arrays, so delivery reads without locks and only
/// connects and disconnects take the user's lock.
/// </summary>
internal sealed class InMemorySessionRouter : ISessionRouter
{
    private readonly ConcurrentDictionary<string, ISession[]> _byUser = new(StringComparer.Ordinal);
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ISession? Register(ISession session)
    {
        ISession? replaced = null;
        _byUser.AddOrUpdate(
            session.User,
            static (_, s) => [s],
            (_, current, s) =>
            {
                replaced = null;
                var list = new List<ISession>(current.Length + 1);
                foreach (var existing in current)
                {
                    if (existing.Device == s.Device)
                    {
                        replaced = existing;
                    }
                    else
                    {
                        list.Add(existing);
                    }
                }

                list.Add(s);
                return [.. list];
            },
            session);
        if (replaced is null)
        {
            Interlocked.Increment(ref _count);
        }

        return replaced;
    }

    public bool Unregister(ISession session)
    {
        while (_byUser.TryGetValue(session.User, out var current))
        {
            var index = Array.IndexOf(current, session);
            if (index < 0)
            {
                return false; // already replaced by a newer socket of the same device
            }

            if (current.Length == 1)
            {
                if (_byUser.TryRemove(new KeyValuePair<string, ISession[]>(session.User, current)))
                {
                    Interlocked.Decrement(ref _count);
                    return true;
                }

                continue;
            }

            var next = new ISession[current.Length - 1];
            Array.Copy(current, 0, next, 0, index);
            Array.Copy(current, index + 1, next, index, current.Length - index - 1);
            if (_byUser.TryUpdate(session.User, next, current))
            {
                Interlocked.Decrement(ref _count);
                return false;
            }
        }

        return false;
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
