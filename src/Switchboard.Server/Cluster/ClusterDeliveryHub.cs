using Switchboard.Server.Delivery;
using Switchboard.Server.Messaging;

namespace Switchboard.Server.Cluster;

/// <summary>
/// Delivery in a cluster: this node's sockets get everything at once through the in-process hub, and the same
/// call becomes a hint on the bus for the nodes that hold the other recipients' sockets (located in Redis). A
/// connection's own answers never leave the node: the connection is here.
/// </summary>
internal sealed class ClusterDeliveryHub(LocalDeliveryHub local, ClusterBus bus, HeadWatch heads) : IDeliveryHub
{
    public ValueTask SendToConnectionAsync(ConnectionContext connection, byte[] frame) => local.SendToConnectionAsync(connection, frame);

    public ValueTask WaitForRoomAsync(ConnectionContext connection) => local.WaitForRoomAsync(connection);

    public ValueTask SendToUserAsync(string user, byte[] frame, int exceptDevice = 0)
    {
        bus.Send(new BusRecord(BusKind.Users, Frame: frame, Users: [user], ExceptUser: exceptDevice == 0 ? null : user, ExceptDevice: exceptDevice));
        return local.SendToUserAsync(user, frame, exceptDevice);
    }

    public ValueTask SendToUsersAsync(IReadOnlyList<string> users, byte[] frame, string? exceptUser = null)
    {
        bus.Send(new BusRecord(BusKind.Users, Frame: frame, Users: users, ExceptUser: exceptUser));
        return local.SendToUsersAsync(users, frame, exceptUser);
    }

    public ValueTask SendEventAsync(EventDelivery delivery)
    {
        heads.Saw(delivery.Conv, delivery.Seq);
        bus.Send(new BusRecord(BusKind.Event, delivery.Conv, delivery.Seq, delivery.Frame, delivery.Recipients, delivery.ExceptUser, delivery.ExceptDevice));
        return local.SendEventAsync(delivery);
    }

    public ValueTask CloseDeviceAsync(string user, int device, int code, string reason)
    {
        bus.Broadcast(new BusRecord(BusKind.CloseDevice, Seq: code, Users: [user], ExceptDevice: device, Reason: reason));
        return local.CloseDeviceAsync(user, device, code, reason);
    }

    public IDisposable BeginBatch() => local.BeginBatch();

    /// <summary>What another node sent for this node's sockets (and what every node must hear).</summary>
    public ValueTask ReceiveAsync(BusRecord record) => record.Kind switch
    {
        BusKind.Event => ReceiveEventAsync(record),
        BusKind.Users when record.ExceptDevice != 0 && record.Users is [var user] => local.SendToUserAsync(user, record.Frame!, record.ExceptDevice),
        BusKind.Users => local.SendToUsersAsync(record.Users!, record.Frame!, record.ExceptUser),
        BusKind.CloseDevice when record.Users is [var user] => local.CloseDeviceAsync(user, record.ExceptDevice, (int)record.Seq, record.Reason),
        _ => ValueTask.CompletedTask,
    };

    private ValueTask ReceiveEventAsync(BusRecord record)
    {
        heads.Saw(record.Conv, record.Seq);
        return local.SendEventAsync(new EventDelivery(record.Conv, record.Seq, record.Frame!, record.Users!, record.ExceptUser, record.ExceptDevice, 0));
    }
}
