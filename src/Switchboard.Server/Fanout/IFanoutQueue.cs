using Switchboard.Server.Delivery;

namespace Switchboard.Server.Fanout;

/// <summary>
/// Hands committed events to this node's sockets. Called in commit order; must keep per-conversation order on
/// every socket and never make the sequencer wait on a socket.
/// </summary>
internal interface IFanoutQueue
{
    void Deliver(in EventDelivery item);
}
