using RocksDbSharp;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

internal sealed partial class RocksMessageStore
{
    public ValueTask<long?> GetLastSeqAsync(string conv, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(Keys().HeadOf(conv).Span, lease.Handles.Meta);
        return ValueTask.FromResult(value is null ? (long?)null : RecordCodec.ReadNumber(value));
    }

    public ValueTask<CidRecord?> FindCidAsync(string sender, string cid, string? conv = null, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(Keys().Cid(sender, cid).Span, lease.Handles.Cids);
        return ValueTask.FromResult(value is null ? (CidRecord?)null : RecordCodec.ReadCid(value));
    }

    public ValueTask<EventRecord?> GetEventAsync(string conv, long seq, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(Keys().Event(conv, seq).Span, lease.Handles.Events);
        return ValueTask.FromResult(value is null ? null : RecordCodec.ReadEvent(conv, seq, value));
    }

    public ValueTask<bool> IsDeletedAsync(string conv, long target, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        return ValueTask.FromResult(lease.Db.Get(Keys().DeletedOf(conv, target).Span, lease.Handles.Meta) is not null);
    }

    public ValueTask<List<EventRecord>> ReadAfterAsync(string conv, long after, long upTo, int limit, CancellationToken cancellationToken = default)
    {
        var list = new List<EventRecord>();
        if (after >= upTo || limit <= 0)
        {
            return ValueTask.FromResult(list);
        }

        using var lease = database.Enter();
        var prefix = Keys().EventPrefix(conv).ToArray();
        using var it = lease.Db.NewIterator(lease.Handles.Events, ReadDefaults);
        for (it.Seek(Keys().Event(conv, after + 1).Span); it.Valid() && list.Count < limit; it.Next())
        {
            var key = it.GetKeySpan();
            if (!key.StartsWith(prefix))
            {
                break;
            }

            var seq = RocksKeys.TrailingInt64(key);
            if (seq > upTo)
            {
                break;
            }

            list.Add(RecordCodec.ReadEvent(conv, seq, it.GetValueSpan()));
        }

        return ValueTask.FromResult(list);
    }

    public ValueTask<List<EventRecord>> ReadBeforeAsync(string conv, long before, long minSeq, long minTs, int limit, CancellationToken cancellationToken = default)
    {
        var list = new List<EventRecord>();
        if (before <= minSeq || before <= 1 || limit <= 0)
        {
            return ValueTask.FromResult(list);
        }

        using var lease = database.Enter();
        var prefix = Keys().EventPrefix(conv).ToArray();
        using var it = lease.Db.NewIterator(lease.Handles.Events, ReadDefaults);
        for (it.SeekForPrev(Keys().Event(conv, before - 1).Span); it.Valid() && list.Count < limit; it.Prev())
        {
            var key = it.GetKeySpan();
            if (!key.StartsWith(prefix))
            {
                break;
            }

            var seq = RocksKeys.TrailingInt64(key);
            if (seq < minSeq)
            {
                break;
            }

            var e = RecordCodec.ReadEvent(conv, seq, it.GetValueSpan());
            if (e.Ts < minTs)
            {
                break; // a conversation's events are in time order: everything before this is older still
            }

            list.Add(e);
        }

        return ValueTask.FromResult(list);
    }

    public ValueTask<long?> NextOwnMessageAsync(string conv, string author, long after, CancellationToken cancellationToken = default)
    {
        long? found = null;
        Scan(conv, after, long.MaxValue, e =>
        {
            if (e.Sender == author && e.Kind is EventKinds.Text or EventKinds.Media)
            {
                found = e.Seq;
                return false;
            }

            return true;
        });
        return ValueTask.FromResult(found);
    }

    public ValueTask<long> CountUnreadAsync(string conv, string user, long after, long upTo, CancellationToken cancellationToken = default)
    {
        long count = 0;
        Scan(conv, after, upTo, e =>
        {
            if (e.Sender != user && e.Kind is EventKinds.Text or EventKinds.Media)
            {
                count++;
            }

            return true;
        });
        return ValueTask.FromResult(count);
    }

    /// <summary>Visits the events in <c>(after, upTo]</c> in order until <paramref name="visit"/> returns false.</summary>
    private void Scan(string conv, long after, long upTo, Func<EventRecord, bool> visit)
    {
        if (after >= upTo)
        {
            return;
        }

        using var lease = database.Enter();
        var prefix = Keys().EventPrefix(conv).ToArray();
        using var it = lease.Db.NewIterator(lease.Handles.Events, ReadDefaults);
        for (it.Seek(Keys().Event(conv, after + 1).Span); it.Valid(); it.Next())
        {
            var key = it.GetKeySpan();
            if (!key.StartsWith(prefix))
            {
                return;
            }

            var seq = RocksKeys.TrailingInt64(key);
            if (seq > upTo || !visit(RecordCodec.ReadEvent(conv, seq, it.GetValueSpan())))
            {
                return;
            }
        }
    }

    public ValueTask<List<Membership>> GetMembershipsAsync(string user, CancellationToken cancellationToken = default)
    {
        var list = new List<Membership>();
        using var lease = database.Enter();
        var prefix = Keys().UserMemberPrefix(user).ToArray();
        var records = new List<MemberRecord>();
        ScanPrefix(lease, lease.Handles.Meta, prefix, (key, value) => records.Add(RecordCodec.ReadMember(RocksKeys.TextAfter(key, prefix.Length), user, value)));

        foreach (var m in records)
        {
            var head = lease.Db.Get(Keys().HeadOf(m.Conv).Span, lease.Handles.Meta);
            var last = head is null ? 0 : RecordCodec.ReadNumber(head);
            list.Add(new Membership(m.Conv, Names.IsGroup(m.Conv) ? "group" : "direct", m.Role, m.JoinedSeq, m.RemovedSeq, last));
        }

        return ValueTask.FromResult(list);
    }

    public ValueTask<GroupRecord?> GetGroupAsync(string conv, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var group = lease.Db.Get(Keys().GroupOf(conv).Span, lease.Handles.Meta);
        if (group is null)
        {
            return ValueTask.FromResult<GroupRecord?>(null);
        }

        var (name, created) = RecordCodec.ReadGroup(group);
        var members = new List<MemberRecord>();
        var prefix = Keys().GroupMemberPrefix(conv).ToArray();
        ScanPrefix(lease, lease.Handles.Meta, prefix, (key, value) => members.Add(RecordCodec.ReadMember(conv, RocksKeys.TextAfter(key, prefix.Length), value)));

        return ValueTask.FromResult<GroupRecord?>(new GroupRecord(conv, name, created, members));
    }

    public ValueTask<Dictionary<string, long>> GetDeviceCursorsAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        using var lease = database.Enter();
        var prefix = Keys().DeviceCursorPrefix(user, device).ToArray();
        ScanPrefix(lease, lease.Handles.Cursors, prefix, (key, value) => map[RocksKeys.TextAfter(key, prefix.Length)] = RecordCodec.ReadNumber(value));

        return ValueTask.FromResult(map);
    }

    public ValueTask<long?> GetDeviceCursorAsync(DeviceCursorKey key, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(Keys().DeviceCursorOf(key.User, key.Device, key.Conv).Span, lease.Handles.Cursors);
        return ValueTask.FromResult(value is null ? (long?)null : RecordCodec.ReadNumber(value));
    }

    public ValueTask<List<MemberCursor>> GetMemberCursorsAsync(string conv, CancellationToken cancellationToken = default)
    {
        var list = new List<MemberCursor>();
        using var lease = database.Enter();
        var prefix = Keys().MemberCursorPrefix(conv).ToArray();
        ScanPrefix(lease, lease.Handles.Cursors, prefix, (key, value) => list.Add(RecordCodec.ReadMemberCursor(RocksKeys.TextAfter(key, prefix.Length), value)));

        return ValueTask.FromResult(list);
    }

    /// <summary>Every key of a family that starts with <paramref name="prefix"/>, in key order.</summary>
    internal static void ScanPrefix(RocksDatabase.Lease lease, ColumnFamilyHandle family, byte[] prefix, KeyValueVisitor visit)
    {
        using var it = lease.Db.NewIterator(family, ReadDefaults);
        for (it.Seek(prefix); it.Valid(); it.Next())
        {
            var key = it.GetKeySpan();
            if (!key.StartsWith(prefix))
            {
                return;
            }

            visit(key, it.GetValueSpan());
        }
    }

    internal delegate void KeyValueVisitor(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);

    public ValueTask<MemberCursor?> GetMemberCursorAsync(MemberCursorKey key, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(Keys().MemberCursorOf(key.Conv, key.User).Span, lease.Handles.Cursors);
        return ValueTask.FromResult(value is null ? (MemberCursor?)null : RecordCodec.ReadMemberCursor(key.User, value));
    }
}
