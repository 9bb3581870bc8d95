using RocksDbSharp;

namespace Switchboard.Server.Storage;

internal sealed partial class RocksMessageStore
{
    /// <summary>
    /// Visits the day buckets up to the cutoff's day, oldest first; for each conversation named there, deletes
    /// its events older than the cutoff (one range delete, and the cid entry and delete marker of each) and then
    /// the bucket, once its whole day is past the cutoff. The work is the old events and one bucket key per
    /// conversation and day: never a pass over the whole store. Conversations keep their last seq.
    /// </summary>
    public ValueTask<int> PurgeAsync(long olderThanTs, int maxEvents, CancellationToken cancellationToken = default)
    {
        var keys = new RocksKeys.Builder();
        var cutoffDay = olderThanTs / DayMs;
        var purged = 0;
        using var lease = database.Enter();
        var h = lease.Handles;
        var bucketPrefix = new[] { RocksKeys.DayBucket };
        using var buckets = lease.Db.NewIterator(h.Meta, ReadDefaults);
        for (buckets.Seek(bucketPrefix); buckets.Valid() && purged < maxEvents && !cancellationToken.IsCancellationRequested; buckets.Next())
        {
            var bucketKey = buckets.GetKeySpan();
            if (bucketKey.Length < 9 || bucketKey[0] != RocksKeys.DayBucket)
            {
                break;
            }

            var day = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bucketKey[1..]);
            if (day > cutoffDay)
            {
                break;
            }

            var conv = RocksKeys.TextAfter(bucketKey, 9);
            using var write = new WriteBatch();
            purged += PurgeConversation(lease, keys, write, conv, olderThanTs);
            if (day < cutoffDay)
            {
                write.Delete(bucketKey, h.Meta); // the whole day is past the cutoff: nothing of it is left
            }

            // Not synced: a purge lost to a crash is done again by the next run.
            lease.Db.Write(write, RocksDatabase.Unsynced);
        }

        return ValueTask.FromResult(purged);
    }

    private static int PurgeConversation(RocksDatabase.Lease lease, RocksKeys.Builder keys, WriteBatch write, string conv, long olderThanTs)
    {
        var h = lease.Handles;
        var prefix = keys.EventPrefix(conv).ToArray();
        var count = 0;
        long? last = null;
        using (var it = lease.Db.NewIterator(h.Events, ReadDefaults))
        {
            for (it.Seek(prefix); it.Valid(); it.Next())
            {
                var key = it.GetKeySpan();
                if (!key.StartsWith(prefix))
                {
                    break;
                }

                var (ts, sender, cid) = RecordCodec.ReadEventHead(it.GetValueSpan());
                if (ts >= olderThanTs)
                {
                    break; // events are in time order within a conversation
                }

                write.Delete(keys.Cid(sender, cid).Span, h.Cids);
                last = RocksKeys.TrailingInt64(key);
                count++;
            }
        }

        if (last is { } through)
        {
            var from = keys.Event(conv, 0).ToArray();
            var to = keys.Event(conv, through + 1).ToArray();
            write.DeleteRange(from, (ulong)from.Length, to, (ulong)to.Length, h.Events);
            var markersFrom = keys.DeletedOf(conv, 0).ToArray();
            var markersTo = keys.DeletedOf(conv, through + 1).ToArray();
            write.DeleteRange(markersFrom, (ulong)markersFrom.Length, markersTo, (ulong)markersTo.Length, h.Meta);
        }

        return count;
    }
}
