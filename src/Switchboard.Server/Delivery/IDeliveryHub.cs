using Switchboard.Server.Messaging;

namespace Switchboard.Server.Delivery;

/// <summary>One committed event for every online device of its recipients.</summary>
/// <param name="Frame">The <c>msg</c> frame, serialised once; every socket shares these bytes.</param>
/// <param name="ExceptUser">With <paramref name="ExceptDevice"/>, the sending device, which has its ack instead.</param>
/// <param name="ReceivedAt">Stopwatch timestamp of the send's arrival, for the delivery latency metric (0: none).</param>
internal readonly record struct EventDelivery(
    string Conv,
    long Seq,
    byte[] Frame,
    IReadOnlyList<string> Recipients,
    string? ExceptUser,
    int ExceptDevice,
    long ReceivedAt);

/// <summary>
/// The one way out to devices, shaped like ASP.NET Core SignalR's <c>HubLifetimeManager</c>: to one connection, to a
/// user's devices, to several users, a conversation's event to its members, and a device's forced close. Nothing
/// but the gateway holds sockets; the message path, receipts and presence send through this. The in-process
/// implementation (<see cref="LocalDeliveryHub"/>) hands frames to this node's sockets; a distributed one routes
/// them to the node that holds each socket. Every method returns without waiting on the network: frames are
/// queued, and a device that cannot keep up is dropped and recovers from the store.
/// </summary>
internal interface IDeliveryHub
{
    /// <summary>A frame for one connection (an ack, an error, an answer); dropped if that connection is gone or replaced.</summary>
    ValueTask SendToConnectionAsync(ConnectionContext connection, byte[] frame);

    /// <summary>Completes when the connection's outbound queue has room, so an answer that streams (sync) never piles up.</summary>
    ValueTask WaitForRoomAsync(ConnectionContext connection);

    /// <summary>A frame for every online device of a user, but <paramref name="exceptDevice"/> (0: none).</summary>
    ValueTask SendToUserAsync(string user, byte[] frame, int exceptDevice = 0);

    /// <summary>A frame for every online device of each user, but <paramref name="exceptUser"/>'s.</summary>
    ValueTask SendToUsersAsync(IReadOnlyList<string> users, byte[] frame, string? exceptUser = null);

    /// <summary>
    /// A stored event for every online device of its recipients. Called in commit order; every socket receives a
    /// conversation's events in seq order, and never while it is still replaying them from the store.
    /// </summary>
    ValueTask SendEventAsync(EventDelivery delivery);

    /// <summary>Closes the socket of a device with a WebSocket close code (unlinked, replaced).</summary>
    ValueTask CloseDeviceAsync(string user, int device, int code, string reason);

    /// <summary>
    /// Starts a batch of sends on this thread: frames sent until the returned scope is disposed may be held and
    /// go out together then (one write per socket for an ack, a message and a receipt of the same commit).
    /// </summary>
    IDisposable BeginBatch();
}
