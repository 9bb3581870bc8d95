namespace Switchboard.Server.Fanout;

/// <summary>One committed event to hand to every online device of its recipients.</summary>
/// <param name="Frame">The <c>msg</c> frame, serialised once; every socket shares these bytes.</param>
/// <param name="ExceptUser">With <paramref name="ExceptDevice"/>, the sending device, which has its ack instead.</param>
internal readonly record struct FanoutItem(
    string Conv,
    long Seq,
    byte[] Frame,
    IReadOnlyList<string> Recipients,
    string? ExceptUser,
    int ExceptDevice,
    long ReceivedAt);

/// <summary>
/// Delivers committed events. Called on the writer thread in commit order; must keep per-conversation order on
/// every socket and never make the sender's ack wait.
/// </summary>
internal interface IFanoutQueue
{
    void Deliver(in FanoutItem item);
}
