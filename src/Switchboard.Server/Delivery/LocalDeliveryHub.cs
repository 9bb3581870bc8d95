using Switchboard.Server.Fanout;
using Switchboard.Server.Messaging;

namespace Switchboard.Server.Delivery;

/// <summary>
/// The in-process delivery hub: every device of every user is on this node, so each call finds the sockets in
/// <see cref="ILocalSessions"/> and queues the frame on them; events go through the fanout queue, which keeps their
/// order. Everything completes at once.
/// </summary>
internal sealed class LocalDeliveryHub(ILocalSessions sessions, IFanoutQueue fanout) : IDeliveryHub
{
    public ValueTask SendToConnectionAsync(ConnectionContext connection, byte[] frame)
    {
        Find(connection)?.Send(frame);
        return ValueTask.CompletedTask;
    }

    public ValueTask WaitForRoomAsync(ConnectionContext connection) =>
        Find(connection)?.WaitForRoomAsync() ?? ValueTask.CompletedTask;

    public ValueTask SendToUserAsync(string user, byte[] frame, int exceptDevice = 0)
    {
        foreach (var session in sessions.Sessions(user))
        {
            if (session.Device != exceptDevice)
            {
                session.Send(frame);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask SendToUsersAsync(IReadOnlyList<string> users, byte[] frame, string? exceptUser = null)
    {
        for (var i = 0; i < users.Count; i++)
        {
            var user = users[i];
            if (user == exceptUser)
            {
                continue;
            }

            foreach (var session in sessions.Sessions(user))
            {
                session.Send(frame);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask SendEventAsync(EventDelivery delivery)
    {
        fanout.Deliver(delivery);
        return ValueTask.CompletedTask;
    }

    public ValueTask CloseDeviceAsync(string user, int device, int code, string reason)
    {
        foreach (var session in sessions.Sessions(user))
        {
            if (session.Device == device)
            {
                session.Close(code, reason);
            }
        }

        return ValueTask.CompletedTask;
    }

    public IDisposable BeginBatch() => sessions.BeginDrainBatch();

    private IDeviceSession? Find(ConnectionContext connection)
    {
        foreach (var session in sessions.Sessions(connection.User))
        {
            if (session.ConnectionId == connection.ConnectionId)
            {
                return session;
            }
        }

        return null;
    }
}
