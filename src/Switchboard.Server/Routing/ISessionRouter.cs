namespace Switchboard.Server.Routing;

/// <summary>
/// Where each user's devices are online: user → (device, connection) entries, across every node. Presence asks it
/// whether a user still has a device online anywhere; a distributed implementation also says which node holds
/// each socket. It holds no sockets.
/// </summary>
internal interface ISessionRouter
{
    /// <summary>A device's connection came online; true when it is the user's first device online.</summary>
    ValueTask<bool> AddAsync(string user, int device, long connectionId);

    /// <summary>
    /// A device's connection went away; true when the user now has no device online. A connection that was
    /// already replaced by a newer one of the same device removes nothing and returns false.
    /// </summary>
    ValueTask<bool> RemoveAsync(string user, int device, long connectionId);

    /// <summary>Whether any device of the user is online.</summary>
    ValueTask<bool> IsOnlineAsync(string user);

    /// <summary>The user's devices with a socket on another node (a cluster's locator); none in one process.</summary>
    ValueTask<IReadOnlyCollection<int>> DevicesOnlineElsewhereAsync(string user) => ValueTask.FromResult<IReadOnlyCollection<int>>([]);

    /// <summary>Devices online, over all users.</summary>
    int Count { get; }
}
