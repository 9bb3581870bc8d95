using System.IO.Hashing;
using System.Runtime.InteropServices;
using RocksDbSharp;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>
/// The embedded message store on RocksDB (<see cref="RocksDatabase"/>; key layout in <see cref="RocksKeys"/>).
/// A commit is one <see cref="WriteBatch"/> written with sync: one log append and one fsync, whatever the batch
/// holds; a batch of cursor moves alone is appended without the fsync (<see cref="StoreBatch.MustSync"/>). Nothing
/// is read back or rewritten per message: an event, its cid entry and the conversation's last seq are appended,
/// cursors are overwritten in place, and the LSM tree folds overwrites together as it compacts. Reads are point
/// lookups and short range scans; RocksDB makes a batch visible to readers only once it is written, so nothing
/// read is newer than what was committed.
/// </summary>
/// <remarks><see cref="CommitAsync"/> is called by one writer at a time (the sequencer); reads by anyone.</remarks>
internal sealed partial class RocksMessageStore(RocksDatabase database) : IMessageStore
{
    private const long DayMs = 86_400_000;

    // The writer's buffers, reused batch after batch (one writer at a time).
    private readonly RocksKeys.Builder _keys = new();
    private readonly RecordCodec.Writer _values = new();
    private readonly Dictionary<string, long> _heads = new(StringComparer.Ordinal);

    // Day buckets already written for the current day, so a busy conversation marks its day once.
    // Hashes of the conversations, not their names: an entry then holds no reference for the GC to scan or copy.
    private readonly HashSet<UInt128> _bucketed = [];
    private long _bucketDay = -1;
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

    /// <summary>
    /// Builds one write batch: each column family's keys in key order, because RocksDB inserts into a memtable
    /// skiplist from where the last insert was ("splice"), so sorted inserts touch fewer nodes than random ones.
    /// </summary>
    private void Commit(StoreBatch batch)
    {
        using var lease = database.Enter();
        var h = lease.Handles;
        using var write = new WriteBatch();
        var newBuckets = new List<UInt128>();

        _sorted.Clear();
        _sorted.AddRange(batch.Events);
        _sorted.Sort(EventOrder);
        _heads.Clear();
        foreach (var e in _sorted)
        {
            RecordCodec.WriteEvent(_values, e);
            write.Put(_keys.Event(e.Conv, e.Seq).Span, _values.Span, h.Events);
            _heads[e.Conv] = e.Seq; // sorted by seq within a conversation: the last one wins
        }

        _sorted.Sort(CidOrder);
        foreach (var e in _sorted)
        {
            RecordCodec.WriteCid(_values, e.Conv, e.Seq, e.Id, e.Ts);
            write.Put(_keys.Cid(e.Sender, e.Cid).Span, _values.Span, h.Cids);
        }

        _names.Clear();
        _names.AddRange(_heads.Keys);
        _names.Sort(StringComparer.Ordinal);
        foreach (var conv in _names)
        {
            RecordCodec.WriteNumber(_values, _heads[conv]);
            write.Put(_keys.HeadOf(conv).Span, _values.Span, h.Meta);
        }

        // The day buckets the purge visits: a conversation is named once per day it had events. A batch's events
        // share one time.
        var day = batch.Events.Count > 0 ? batch.Events[0].Ts / DayMs : 0;
        foreach (var conv in _names)
        {
            if (day > _bucketDay || _bucketed.Count >= MaxBucketed)
            {
                _bucketed.Clear();
                _bucketDay = Math.Max(day, _bucketDay);
            }

            var hash = XxHash128.HashToUInt128(MemoryMarshal.AsBytes(conv.AsSpan()));
            if (day != _bucketDay || _bucketed.Add(hash))
            {
                write.Put(_keys.DayBucketOf(day, conv).Span, ReadOnlySpan<byte>.Empty, h.Meta);
                newBuckets.Add(hash);
            }
        }

        foreach (var e in batch.Events)
        {
            if (e.Kind == EventKinds.Delete && e.Target is { } target)
            {
                write.Put(_keys.DeletedOf(e.Conv, target).Span, ReadOnlySpan<byte>.Empty, h.Meta);
            }
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

        _deviceKeys.Clear();
        _deviceKeys.AddRange(batch.DeviceCursors.Keys);
        _deviceKeys.Sort(DeviceCursorOrder);
        foreach (var key in _deviceKeys)
        {
            RecordCodec.WriteNumber(_values, batch.DeviceCursors[key]);
            write.Put(_keys.DeviceCursorOf(key.User, key.Device, key.Conv).Span, _values.Span, h.Cursors);
        }

        _memberKeys.Clear();
        _memberKeys.AddRange(batch.MemberCursors.Keys);
        _memberKeys.Sort(MemberCursorOrder);
        foreach (var key in _memberKeys)
        {
            RecordCodec.WriteMemberCursor(_values, batch.MemberCursors[key]);
            write.Put(_keys.MemberCursorOf(key.Conv, key.User).Span, _values.Span, h.Cursors);
        }

        try
        {
            lease.Db.Write(write, batch.MustSync ? RocksDatabase.Synced : RocksDatabase.Unsynced);
        }
        catch
        {
            foreach (var hash in newBuckets)
            {
                _bucketed.Remove(hash); // not written after all: mark them again next time
            }

            throw;
        }
    }

    private readonly List<EventRecord> _sorted = [];
    private readonly List<string> _names = [];
    private readonly List<DeviceCursorKey> _deviceKeys = [];
    private readonly List<MemberCursorKey> _memberKeys = [];

    private static readonly Comparison<EventRecord> EventOrder = static (a, b) =>
        string.CompareOrdinal(a.Conv, b.Conv) is var c and not 0 ? c : a.Seq.CompareTo(b.Seq);

    private static readonly Comparison<EventRecord> CidOrder = static (a, b) =>
        string.CompareOrdinal(a.Sender, b.Sender) is var c and not 0 ? c : string.CompareOrdinal(a.Cid, b.Cid);

    private static readonly Comparison<DeviceCursorKey> DeviceCursorOrder = static (a, b) =>
        string.CompareOrdinal(a.User, b.User) is var c and not 0 ? c : a.Device != b.Device ? a.Device.CompareTo(b.Device) : string.CompareOrdinal(a.Conv, b.Conv);

    private static readonly Comparison<MemberCursorKey> MemberCursorOrder = static (a, b) =>
        string.CompareOrdinal(a.Conv, b.Conv) is var c and not 0 ? c : string.CompareOrdinal(a.User, b.User);

    public ValueTask ProbeAsync(CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var keys = Keys();
        RecordCodec.Writer value = new();
        RecordCodec.WriteNumber(value, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        lease.Db.Put(keys.StoreFactOf("probe").Span, value.Span, lease.Handles.Meta, RocksDatabase.Synced);

        // A synced write lands in the log file already open, which goes on taking writes after the directory has
        // become unwritable (or been deleted); the store's next log or table file could not be made. So a new file
        // is made, synced and removed in the store's directory too.
        var probe = Path.Combine(database.StoreDir, ".readyz-probe");
        using (var file = new FileStream(probe, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.WriteThrough))
        {
            file.Write(value.Span);
            file.Flush(flushToDisk: true);
        }

        File.Delete(probe);
        return ValueTask.CompletedTask;
    }

    [ThreadStatic]
    private static RocksKeys.Builder? _threadKeys;

    /// <summary>A key builder for this thread's current call (reads complete synchronously, so calls never interleave on it).</summary>
    private static RocksKeys.Builder Keys() => _threadKeys ??= new RocksKeys.Builder();

    private static readonly ReadOptions ReadDefaults = new();
}
