using System.Collections.Concurrent;
using Switchboard.Server.Delivery;

namespace Switchboard.Server.Gateway;

/// <summary>
/// The sockets this node holds: a dictionary of small copy-on-write arrays, so delivery reads without locks.
/// Registering and unregistering take one lock. A newer socket of the same device replaces the older one.
/// </summary>
internal sealed class ConnectionTable : ILocalSessions
{
    private static readonly GatewayConnection[] None = [];
    private readonly ConcurrentDictionary<string, GatewayConnection[]> _byUser = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private int _count;

    public int Count => Volatile.Read(ref _count);

    /// <summary>Adds a connection; returns the one it replaces (same user and device), if any.</summary>
    public GatewayConnection? Register(GatewayConnection connection)
    {
        lock (_gate)
        {
            var current = _byUser.GetValueOrDefault(connection.User) ?? None;
            GatewayConnection? replaced = null;
            var next = new List<GatewayConnection>(current.Length + 1);
            foreach (var existing in current)
            {
                if (existing.Device == connection.Device)
                {
                    replaced = existing;
                }
                else
                {
                    next.Add(existing);
                }
            }

            next.Add(connection);
            _byUser[connection.User] = [.. next];
            if (replaced is null)
            {
                _count++;
            }

            return replaced;
        }
    }

    /// <summary>Removes a connection; false when it was already replaced by a newer one.</summary>
    public bool Unregister(GatewayConnection connection)
    {
        lock (_gate)
        {
            var current = _byUser.GetValueOrDefault(connection.User) ?? None;
            var index = Array.IndexOf(current, connection);
            if (index < 0)
            {
                return false;
            }

            _count--;
            if (current.Length == 1)
            {
                _byUser.TryRemove(connection.User, out _);
                return true;
            }

            _byUser[connection.User] = [.. current[..index], .. current[(index + 1)..]];
            return true;
        }
    }

    public IDeviceSession[] Sessions(string user) => _byUser.GetValueOrDefault(user) ?? None;

    public IDisposable BeginDrainBatch() => GatewayConnection.DeferDrains();

    /// <summary>A snapshot of every connection, for sweeps (heartbeats).</summary>
    public List<GatewayConnection> All()
    {
        var all = new List<GatewayConnection>(Count);
        foreach (var (_, connections) in _byUser)
        {
            all.AddRange(connections);
        }

        return all;
    }
}
