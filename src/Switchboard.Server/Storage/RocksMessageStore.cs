using RocksDbSharp;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>
/// The embedded message store on RocksDB (<see cref="RocksDatabase"/>; key layout in <see cref="RocksKeys"/>).
/// A commit is one <see cref="WriteBatch"/> written with sync: one log append and one fsync, whatever the batch
/// holds. Nothing is read back or rewritten per message: an event, its cid entry and the conversation's last seq
/// are appended, cursors are overwritten in place, and the LSM tree folds overwrites together as it compacts.
/// Reads are point lookups and short range scans; RocksDB makes a batch visible to readers only once it is
/// durable, so nothing read is newer than what was committed.
/// </summary>
/// <remarks><see cref="CommitAsync"/> is called by one writer at a time (the sequencer); reads by anyone.</remarks>
internal sealed partial class RocksMessageStore(RocksDatabase database) : IMessageStore
{
    private const long HourMs = 3_600_000;

    // The writer's buffers, reused batch after batch (one writer at a time).
    private readonly RocksKeys.Builder _keys = new();
    private readonly RecordCodec.Writer _values = new();
    private readonly Dictionary<string, long> _heads = new(StringComparer.Ordinal);

    // Hour buckets already written for the current hour, so a busy conversation marks its hour once.
    private readonly HashSet<string> _bucketed = new(StringComparer.Ordinal);
    private long _bucketHour = -1;
    private const int MaxBucketed = 200_000; // bounded: forgetting one only costs a repeated tiny put

    public ValueTask CommitAsync(StoreBatch batch, CancellationToken cancellationToken)
    {
        if (batch.IsEmpty)
        {
            return ValueTask.CompletedTask;
        }

        try
        {
            Commit(batch);
        }
        catch (RocksDbException)
        {
            // RocksDB refuses every write after one failed until it recovers from its log; without a resume in
            // the C API, that is a reopen. If it fails too, the next commit tries again.
            try
            {
                database.Reopen();
            }
            catch (Exception)
            {
            }

            throw;
        }

        return ValueTask.CompletedTask;
    }

    private void Commit(StoreBatch batch)
    {
        using var lease = database.Enter();
        var h = lease.Handles;
        using var write = new WriteBatch();
        var newBuckets = new List<string>();
        _heads.Clear();
        foreach (var e in batch.Events)
        {
            RecordCodec.WriteEvent(_values, e);
            write.Put(_keys.Event(e.Conv, e.Seq).Span, _values.Span, h.Events);
            RecordCodec.WriteCid(_values, e.Conv, e.Seq, e.Id, e.Ts);
            write.Put(_keys.Cid(e.Sender, e.Cid).Span, _values.Span, h.Cids);
            if (e.Kind == EventKinds.Delete && e.Target is { } target)
            {
                write.Put(_keys.DeletedOf(e.Conv, target).Span, ReadOnlySpan<byte>.Empty, h.Meta);
            }

            _heads[e.Conv] = Math.Max(e.Seq, _heads.GetValueOrDefault(e.Conv));
            var hour = e.Ts / HourMs;
            if (hour > _bucketHour || _bucketed.Count >= MaxBucketed)
            {
                _bucketed.Clear();
                _bucketHour = Math.Max(hour, _bucketHour);
            }

            if (hour != _bucketHour || _bucketed.Add(e.Conv))
            {
                write.Put(_keys.HourBucketOf(hour, e.Conv).Span, ReadOnlySpan<byte>.Empty, h.Meta);
                if (hour == _bucketHour)
                {
                    newBuckets.Add(e.Conv);
                }
            }
        }

        foreach (var (conv, seq) in _heads)
        {
            RecordCodec.WriteNumber(_values, seq);
            write.Put(_keys.HeadOf(conv).Span, _values.Span, h.Meta);
        }

        foreach (var (conv, name, created) in batch.Groups)
        {
            RecordCodec.WriteGroup(_values, name, created);
            write.Put(_keys.GroupOf(conv).Span, _values.Span, h.Meta);
        }

        foreach (var member in batch.Members)
        {
            RecordCodec.WriteMember(_values, member);
            write.Put(_keys.UserMemberOf(member.User, member.Conv).Span, _values.Span, h.Meta);
            if (Names.IsGroup(member.Conv))
            {
                // A direct conversation's members are in its id; only groups need the list by conversation.
                write.Put(_keys.GroupMemberOf(member.Conv, member.User).Span, _values.Span, h.Meta);
            }
        }

        foreach (var (key, delivered) in batch.DeviceCursors)
        {
            RecordCodec.WriteNumber(_values, delivered);
            write.Put(_keys.DeviceCursorOf(key.User, key.Device, key.Conv).Span, _values.Span, h.Cursors);
        }

        foreach (var (key, cursor) in batch.MemberCursors)
        {
            RecordCodec.WriteMemberCursor(_values, cursor);
            write.Put(_keys.MemberCursorOf(key.Conv, key.User).Span, _values.Span, h.Cursors);
        }

        try
        {
            lease.Db.Write(write, RocksDatabase.Synced);
        }
        catch
        {
            foreach (var conv in newBuckets)
            {
                _bucketed.Remove(conv); // not written after all: mark them again next time
            }

            throw;
        }
    }

    public ValueTask ProbeAsync(CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var keys = Keys();
        RecordCodec.Writer value = new();
        RecordCodec.WriteNumber(value, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        lease.Db.Put(keys.StoreFactOf("probe").Span, value.Span, lease.Handles.Meta, RocksDatabase.Synced);
        return ValueTask.CompletedTask;
    }

    [ThreadStatic]
    private static RocksKeys.Builder? _threadKeys;

    /// <summary>A key builder for this thread's current call (reads complete synchronously, so calls never interleave on it).</summary>
    private static RocksKeys.Builder Keys() => _threadKeys ??= new RocksKeys.Builder();

    private static readonly ReadOptions ReadDefaults = new();
}
