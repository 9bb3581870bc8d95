using System.Text;

namespace Switchboard.Server.Cluster;

/// <summary>What travels between nodes; every one a hint that the store can stand in for.</summary>
internal enum BusKind : byte
{
    /// <summary>A stored event for the recipients' sockets on the target node.</summary>
    Event = 1,

    /// <summary>A frame (receipt, typing) for the users' sockets on the target node.</summary>
    Users = 2,

    /// <summary>Close a device's socket wherever it is (unlinked).</summary>
    CloseDevice = 3,

    /// <summary>A presence change for the watchers on every node.</summary>
    Presence = 4,

    /// <summary>A group's membership changed: drop it from every node's caches.</summary>
    GroupChanged = 5,

    /// <summary>A member's cursors in a group moved (delivered in <c>Seq</c>, read in <c>Read</c>; -1: unchanged).</summary>
    CursorMoved = 6,

    /// <summary>A user's push registrations changed (<c>Seq</c> 1: they have some, 0: none left).</summary>
    PushRegistered = 7,

    /// <summary>The sender could not publish some hints (NATS away, its queue full): every node sweeps.</summary>
    HintsLost = 8,
}

/// <summary>One record of a bus message.</summary>
internal sealed record BusRecord(
    BusKind Kind,
    string Conv = "",
    long Seq = 0,
    byte[]? Frame = null,
    IReadOnlyList<string>? Users = null,
    string? ExceptUser = null,
    int ExceptDevice = 0,
    string Reason = "",
    long Read = -1);

/// <summary>
/// The bus's byte layout: a message is the sending node, its number on its subject (1, 2, 3… from the node's start:
/// a receiver that sees one skipped knows a hint was lost), a count, then records; a record is its kind and its fields, strings as
/// length-prefixed UTF-8, the frame as length-prefixed bytes (already serialised once for every socket).
/// </summary>
internal static class BusCodec
{
    public static byte[] Encode(int origin, long number, IReadOnlyList<BusRecord> records)
    {
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            w.Write7BitEncodedInt(origin);
            w.Write7BitEncodedInt64(number);
            w.Write7BitEncodedInt(records.Count);
            foreach (var r in records)
            {
                w.Write((byte)r.Kind);
                w.Write(r.Conv);
                w.Write7BitEncodedInt64(r.Seq);
                var frame = r.Frame ?? [];
                w.Write7BitEncodedInt(frame.Length);
                w.Write(frame);
                var users = r.Users ?? [];
                w.Write7BitEncodedInt(users.Count);
                foreach (var user in users)
                {
                    w.Write(user);
                }

                w.Write(r.ExceptUser ?? "");
                w.Write7BitEncodedInt(r.ExceptDevice);
                w.Write(r.Reason);
                w.Write7BitEncodedInt64(r.Read);
            }
        }

        return stream.ToArray();
    }

    /// <summary>The records of a message; a message that does not parse (another version, damage) yields none.</summary>
    public static List<BusRecord> Decode(byte[] data, out int origin, out long number)
    {
        var list = new List<BusRecord>();
        origin = -1;
        number = 0;
        try
        {
            using var r = new BinaryReader(new MemoryStream(data), Encoding.UTF8);
            origin = r.Read7BitEncodedInt();
            number = r.Read7BitEncodedInt64();
            var count = r.Read7BitEncodedInt();
            for (var i = 0; i < count; i++)
            {
                var kind = (BusKind)r.ReadByte();
                var conv = r.ReadString();
                var seq = r.Read7BitEncodedInt64();
                var frame = r.ReadBytes(r.Read7BitEncodedInt());
                var users = new string[r.Read7BitEncodedInt()];
                for (var u = 0; u < users.Length; u++)
                {
                    users[u] = r.ReadString();
                }

                var except = r.ReadString();
                var exceptDevice = r.Read7BitEncodedInt();
                var reason = r.ReadString();
                var read = r.Read7BitEncodedInt64();
                list.Add(new BusRecord(kind, conv, seq, frame, users, except.Length == 0 ? null : except, exceptDevice, reason, read));
            }
        }
        catch (Exception ex) when (ex is EndOfStreamException or IOException or FormatException or ArgumentException)
        {
            list.Clear();
        }

        return list;
    }
}
