using Microsoft.Data.Sqlite;
using RocksDbSharp;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>
/// Brings a data dir of the earlier SQLite store (<c>switchboard.db</c>, schema version 1) into RocksDB on the first
/// start: users, devices and tokens, conversations with their last seq, members, events with their cid entries,
/// and both kinds of cursors. Written in unsynced batches, then one synced marker: a start that dies half way
/// imports again from the top (every put is an overwrite). The SQLite files are then renamed with
/// <c>.imported</c>, kept as they were, so nothing is lost if something looks wrong; delete them once satisfied.
/// </summary>
internal static partial class SqliteImport
{
    public const string FileName = "switchboard.db";
    private const string Marker = "imported-sqlite";
    private const int BatchOps = 20_000;

    public static void ImportIfPresent(RocksDatabase database, ILogger logger)
    {
        var file = Path.Combine(database.DataDir, FileName);
        if (!File.Exists(file))
        {
            return;
        }

        var keys = new RocksKeys.Builder();
        using (var lease = database.Enter())
        {
            if (lease.Db.Get(keys.StoreFactOf(Marker).Span, lease.Handles.Meta) is null)
            {
                LogImporting(logger, file);
                var counts = Import(lease, file);
                LogImported(logger, counts.Users, counts.Devices, counts.Conversations, counts.Events);
            }
        }

        SqliteConnection.ClearAllPools();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            if (File.Exists(file + suffix))
            {
                File.Move(file + suffix, file + suffix + ".imported", overwrite: true);
            }
        }
    }

    private static (long Users, long Devices, long Conversations, long Events) Import(RocksDatabase.Lease lease, string file)
    {
        var h = lease.Handles;
        var keys = new RocksKeys.Builder();
        var value = new RecordCodec.Writer();
        var write = new WriteBatch();
        var pending = 0;
        void Put(ColumnFamilyHandle family)
        {
            write.Put(keys.Span, value.Span, family);
            if (++pending >= BatchOps)
            {
                lease.Db.Write(write, RocksDatabase.Unsynced);
                write.Clear();
                pending = 0;
            }
        }

        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = file, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        connection.Open();
        using (var version = connection.CreateCommand())
        {
            version.CommandText = "PRAGMA user_version";
            if (Convert.ToInt64(version.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) != 1)
            {
                throw new InvalidOperationException($"{file} has a schema this version cannot import (expected version 1)");
            }
        }

        long users = 0, devices = 0, conversations = 0, events = 0;
        foreach (var row in Rows(connection, "SELECT user, pw_hash, pw_salt, pw_params, created, last_seen FROM users"))
        {
            var user = row.GetString(0);
            value.Start().Blob((byte[])row[1]).Blob((byte[])row[2]).Text(row.GetString(3)).UInt((ulong)row.GetInt64(4));
            keys.UserOf(user);
            Put(h.Meta);
            if (!row.IsDBNull(5))
            {
                RecordCodec.WriteNumber(value, row.GetInt64(5));
                keys.LastSeenOf(user);
                Put(h.Meta);
            }

            users++;
        }

        foreach (var row in Rows(connection, "SELECT user, device, name, token_hash, created, last_active, revoked FROM devices"))
        {
            var user = row.GetString(0);
            var device = row.GetInt32(1);
            var token = row.IsDBNull(3) ? null : (byte[])row[3];
            var revoked = row.GetInt64(6) != 0;
            value.Start().Text(row.GetString(2)).Blob(revoked ? [] : token ?? []).UInt((ulong)row.GetInt64(4)).Byte(revoked ? (byte)1 : (byte)0);
            keys.DeviceOf(user, device);
            Put(h.Meta);
            if (token is not null && !revoked)
            {
                value.Start().Text(user).UInt((ulong)device);
                keys.TokenOf(token);
                Put(h.Meta);
            }

            RecordCodec.WriteNumber(value, row.GetInt64(5));
            keys.LastActiveOf(user, device);
            Put(h.Meta);
            devices++;
        }

        foreach (var row in Rows(connection, "SELECT conv, kind, name, last_seq, created FROM conversations"))
        {
            var conv = row.GetString(0);
            RecordCodec.WriteNumber(value, row.GetInt64(3));
            keys.HeadOf(conv);
            Put(h.Meta);
            if (row.GetString(1) == "group")
            {
                RecordCodec.WriteGroup(value, row.IsDBNull(2) ? conv : row.GetString(2), row.GetInt64(4));
                keys.GroupOf(conv);
                Put(h.Meta);
            }

            conversations++;
        }

        foreach (var row in Rows(connection, "SELECT conv, user, role, joined_seq, removed_seq, joined_ts FROM members"))
        {
            var member = new MemberRecord(row.GetString(0), row.GetString(1), row.GetString(2), row.GetInt64(3), row.IsDBNull(4) ? null : row.GetInt64(4), row.GetInt64(5));
            RecordCodec.WriteMember(value, member);
            keys.UserMemberOf(member.User, member.Conv);
            Put(h.Meta);
            if (Names.IsGroup(member.Conv))
            {
                keys.GroupMemberOf(member.Conv, member.User);
                Put(h.Meta);
            }
        }

        var buckets = new HashSet<(long, string)>();
        foreach (var row in Rows(connection, "SELECT conv, seq, id, ts, sender, dev, kind, cid, body, e2ee, reply_to, target, system FROM events"))
        {
            var e = new EventRecord
            {
                Conv = row.GetString(0),
                Seq = row.GetInt64(1),
                Id = row.GetInt64(2),
                Ts = row.GetInt64(3),
                Sender = row.GetString(4),
                Dev = row.GetInt32(5),
                Kind = row.GetString(6),
                Cid = row.GetString(7),
                Body = row.IsDBNull(8) ? null : row.GetString(8),
                E2ee = row.IsDBNull(9) ? null : row.GetString(9),
                ReplyTo = row.IsDBNull(10) ? null : row.GetInt64(10),
                Target = row.IsDBNull(11) ? null : row.GetInt64(11),
                System = row.IsDBNull(12) ? null : row.GetString(12),
            };
            RecordCodec.WriteEvent(value, e);
            keys.Event(e.Conv, e.Seq);
            Put(h.Events);
            RecordCodec.WriteCid(value, e.Conv, e.Seq, e.Id, e.Ts);
            keys.Cid(e.Sender, e.Cid);
            Put(h.Cids);
            value.Start();
            if (e.Kind == EventKinds.Delete && e.Target is { } target)
            {
                keys.DeletedOf(e.Conv, target);
                Put(h.Meta);
            }

            if (buckets.Add((e.Ts / 86_400_000, e.Conv)))
            {
                keys.DayBucketOf(e.Ts / 86_400_000, e.Conv);
                Put(h.Meta);
            }

            events++;
        }

        foreach (var row in Rows(connection, "SELECT user, device, conv, delivered FROM device_cursors"))
        {
            RecordCodec.WriteNumber(value, row.GetInt64(3));
            keys.DeviceCursorOf(row.GetString(0), row.GetInt32(1), row.GetString(2));
            Put(h.Cursors);
        }

        foreach (var row in Rows(connection, "SELECT conv, user, delivered, read, updated FROM member_cursors"))
        {
            var user = row.GetString(1);
            RecordCodec.WriteMemberCursor(value, new MemberCursor(user, row.GetInt64(2), row.GetInt64(3), row.GetInt64(4)));
            keys.MemberCursorOf(row.GetString(0), user);
            Put(h.Cursors);
        }

        // Everything so far is in the log; the synced marker makes it all durable and says the import is done.
        value.Start().UInt((ulong)DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        keys.StoreFactOf(Marker);
        write.Put(keys.Span, value.Span, h.Meta);
        lease.Db.Write(write, RocksDatabase.Synced);
        write.Dispose();
        return (users, devices, conversations, events);
    }

    private static IEnumerable<SqliteDataReader> Rows(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            yield return reader;
        }
    }

    [LoggerMessage(EventId = 1020, Level = LogLevel.Warning, Message = "Importing the earlier SQLite store {File} into the RocksDB store")]
    private static partial void LogImporting(ILogger logger, string file);

    [LoggerMessage(EventId = 1021, Level = LogLevel.Warning, Message = "Imported {Users} users, {Devices} devices, {Conversations} conversations and {Events} events; the SQLite files are kept with the suffix .imported")]
    private static partial void LogImported(ILogger logger, long users, long devices, long conversations, long events);
}
