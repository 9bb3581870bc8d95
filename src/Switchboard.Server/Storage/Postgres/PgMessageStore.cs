using System.Collections.Concurrent;
using System.Globalization;
using Npgsql;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage.Postgres;

/// <summary>
/// The message store of a cluster, on PostgreSQL shards (<see cref="PgShards"/>): a conversation's events, members,
/// group record and cursors all live on its shard, so a batch's part for one shard is one transaction, sent as one
/// round trip (<see cref="NpgsqlBatch"/>: an implicit transaction, committed with <c>synchronous_commit</c> on).
/// Several nodes append to the same conversations: each append first locks the conversation's head and checks it
/// is still the seq the batch was decided on (<c>sb_append_heads</c>); when another node got there first, that
/// conversation's part is refused as moved and the sequencer decides it again. Cursors are written as high-water
/// marks (<c>GREATEST</c>), so two nodes never move one back. Shards commit in parallel and independently: a shard
/// that fails loses its part of the batch only (<see cref="PartialCommitException"/>).
/// Reads of a user's rows that are spread over conversations (memberships, a device's cursors) ask every shard.
/// </summary>
internal sealed class PgMessageStore(PgShards shards) : IMessageStore
{
    private const long DayMs = 86_400_000;

    // Day partitions known to exist, per shard. A purge forgets the ones it drops.
    private readonly ConcurrentDictionary<(int Shard, long Day), bool> _partitions = new();

    public async ValueTask CommitAsync(StoreBatch batch, CancellationToken cancellationToken)
    {
        if (batch.IsEmpty)
        {
            return;
        }

        var parts = new Dictionary<int, StoreBatch>();
        StoreBatch PartOf(string conv)
        {
            var shard = shards.ForConversation(conv);
            if (!parts.TryGetValue(shard, out var part))
            {
                parts[shard] = part = new StoreBatch();
            }

            return part;
        }

        foreach (var e in batch.Events)
        {
            PartOf(e.Conv).Events.Add(e);
        }

        foreach (var m in batch.Members)
        {
            PartOf(m.Conv).Members.Add(m);
        }

        foreach (var g in batch.Groups)
        {
            PartOf(g.Conv).Groups.Add(g);
        }

        foreach (var (key, seq) in batch.DeviceCursors)
        {
            PartOf(key.Conv).DeviceCursors[key] = seq;
        }

        foreach (var (key, cursor) in batch.MemberCursors)
        {
            PartOf(key.Conv).MemberCursors[key] = cursor;
        }

        if (parts.Count == 1)
        {
            var (shard, part) = parts.First();
            var failure = await CommitPartAsync(shard, part, cancellationToken);
            if (failure is not null)
            {
                throw Partial([(part, failure)]);
            }

            return;
        }

        var tasks = parts.Select(p => CommitPartAsync(p.Key, p.Value, cancellationToken)).ToArray();
        await Task.WhenAll(tasks);
        var failed = new List<(StoreBatch Part, Exception Failure)>();
        var i = 0;
        foreach (var (_, part) in parts)
        {
            if (tasks[i++].Result is { } failure)
            {
                failed.Add((part, failure));
            }
        }

        if (failed.Count > 0)
        {
            throw Partial(failed);
        }
    }

    /// <summary>
    /// What failed, by conversation. A part refused by the heads check is decided again whole: the conversations it
    /// names moved, and the others of that part were only refused with them.
    /// </summary>
    private static PartialCommitException Partial(List<(StoreBatch Part, Exception Failure)> failed)
    {
        var moved = new HashSet<string>(StringComparer.Ordinal);
        var lost = new HashSet<string>(StringComparer.Ordinal);
        Exception? cause = null;
        foreach (var (part, failure) in failed)
        {
            if (failure is PostgresException { SqlState: "SB001" })
            {
                moved.UnionWith(Conversations(part));
            }
            else
            {
                lost.UnionWith(Conversations(part));
                cause ??= failure;
            }
        }

        return new PartialCommitException(moved, lost, cause);
    }

    private static IEnumerable<string> Conversations(StoreBatch part) =>
        part.Events.Select(e => e.Conv)
            .Concat(part.Members.Select(m => m.Conv))
            .Concat(part.Groups.Select(g => g.Conv))
            .Concat(part.DeviceCursors.Keys.Select(k => k.Conv))
            .Concat(part.MemberCursors.Keys.Select(k => k.Conv))
            .Distinct(StringComparer.Ordinal);

    /// <summary>Commits one shard's part as one transaction; returns why it failed, or null.</summary>
    private async Task<Exception?> CommitPartAsync(int shard, StoreBatch part, CancellationToken cancellationToken)
    {
        try
        {
            await EnsurePartitionsAsync(shard, part.Events, cancellationToken);
            await using var connection = await shards[shard].OpenConnectionAsync(cancellationToken);
            await using var batch = new NpgsqlBatch(connection);
            if (!part.MustSync)
            {
                // Cursor moves alone: durable with the next synchronous commit, as the port allows.
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT set_config('synchronous_commit', 'off', true)"));
            }

            if (part.Events.Count > 0)
            {
                AddEvents(batch, part.Events);
            }

            if (part.Groups.Count > 0)
            {
                var command = new NpgsqlBatchCommand("""
                    INSERT INTO groups (conv, name, created) SELECT * FROM unnest(@conv, @name, @created)
                    ON CONFLICT (conv) DO UPDATE SET name = EXCLUDED.name, created = EXCLUDED.created
                    """);
                command.Parameters.AddWithValue("conv", part.Groups.Select(g => g.Conv).ToArray());
                command.Parameters.AddWithValue("name", part.Groups.Select(g => g.Name).ToArray());
                command.Parameters.AddWithValue("created", part.Groups.Select(g => g.Created).ToArray());
                batch.BatchCommands.Add(command);
            }

            if (part.Members.Count > 0)
            {
                // The last record given for a (conv, user) is the one written.
                var members = part.Members.GroupBy(m => (m.Conv, m.User)).Select(g => g.Last()).ToList();
                var command = new NpgsqlBatchCommand("""
                    INSERT INTO members (conv, usr, role, joined_seq, removed_seq, joined_ts) SELECT * FROM unnest(@conv, @usr, @role, @joined, @removed, @ts)
                    ON CONFLICT (conv, usr) DO UPDATE SET role = EXCLUDED.role, joined_seq = EXCLUDED.joined_seq, removed_seq = EXCLUDED.removed_seq, joined_ts = EXCLUDED.joined_ts
                    """);
                command.Parameters.AddWithValue("conv", members.Select(m => m.Conv).ToArray());
                command.Parameters.AddWithValue("usr", members.Select(m => m.User).ToArray());
                command.Parameters.AddWithValue("role", members.Select(m => m.Role).ToArray());
                command.Parameters.AddWithValue("joined", members.Select(m => m.JoinedSeq).ToArray());
                command.Parameters.AddWithValue("removed", members.Select(m => m.RemovedSeq).ToArray());
                command.Parameters.AddWithValue("ts", members.Select(m => m.JoinedTs).ToArray());
                batch.BatchCommands.Add(command);
            }

            if (part.DeviceCursors.Count > 0)
            {
                var command = new NpgsqlBatchCommand("""
                    INSERT INTO device_cursors (usr, device, conv, seq) SELECT * FROM unnest(@usr, @device, @conv, @seq)
                    ON CONFLICT (usr, device, conv) DO UPDATE SET seq = GREATEST(device_cursors.seq, EXCLUDED.seq)
                    """);
                command.Parameters.AddWithValue("usr", part.DeviceCursors.Keys.Select(k => k.User).ToArray());
                command.Parameters.AddWithValue("device", part.DeviceCursors.Keys.Select(k => k.Device).ToArray());
                command.Parameters.AddWithValue("conv", part.DeviceCursors.Keys.Select(k => k.Conv).ToArray());
                command.Parameters.AddWithValue("seq", part.DeviceCursors.Values.ToArray());
                batch.BatchCommands.Add(command);
            }

            if (part.MemberCursors.Count > 0)
            {
                var command = new NpgsqlBatchCommand("""
                    INSERT INTO member_cursors (conv, usr, delivered, read, updated) SELECT * FROM unnest(@conv, @usr, @delivered, @read, @updated)
                    ON CONFLICT (conv, usr) DO UPDATE SET delivered = GREATEST(member_cursors.delivered, EXCLUDED.delivered),
                        read = GREATEST(member_cursors.read, EXCLUDED.read), updated = GREATEST(member_cursors.updated, EXCLUDED.updated)
                    """);
                command.Parameters.AddWithValue("conv", part.MemberCursors.Keys.Select(k => k.Conv).ToArray());
                command.Parameters.AddWithValue("usr", part.MemberCursors.Keys.Select(k => k.User).ToArray());
                command.Parameters.AddWithValue("delivered", part.MemberCursors.Values.Select(c => c.Delivered).ToArray());
                command.Parameters.AddWithValue("read", part.MemberCursors.Values.Select(c => c.Read).ToArray());
                command.Parameters.AddWithValue("updated", part.MemberCursors.Values.Select(c => c.Updated).ToArray());
                batch.BatchCommands.Add(command);
            }

            await batch.ExecuteNonQueryAsync(cancellationToken);
            return null;
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            return ex;
        }
    }

    /// <summary>The heads (checked and moved), then the events.</summary>
    private static void AddEvents(NpgsqlBatch batch, List<EventRecord> events)
    {
        var first = new Dictionary<string, long>(StringComparer.Ordinal);
        var last = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var e in events)
        {
            first[e.Conv] = first.TryGetValue(e.Conv, out var f) ? Math.Min(f, e.Seq) : e.Seq;
            last[e.Conv] = last.TryGetValue(e.Conv, out var l) ? Math.Max(l, e.Seq) : e.Seq;
        }

        var names = first.Keys.Order(StringComparer.Ordinal).ToArray(); // every node locks in this order
        var heads = new NpgsqlBatchCommand("SELECT sb_append_heads(@names, @expected, @lasts)");
        heads.Parameters.AddWithValue("names", names);
        heads.Parameters.AddWithValue("expected", names.Select(n => first[n] - 1).ToArray());
        heads.Parameters.AddWithValue("lasts", names.Select(n => last[n]).ToArray());
        batch.BatchCommands.Add(heads);

        var insert = new NpgsqlBatchCommand("""
            INSERT INTO events (conv, seq, id, ts, sender, dev, kind, cid, body, e2ee, reply_to, target, system)
            SELECT * FROM unnest(@conv, @seq, @id, @ts, @sender, @dev, @kind, @cid, @body, @e2ee, @reply_to, @target, @system)
            """);
        insert.Parameters.AddWithValue("conv", events.Select(e => e.Conv).ToArray());
        insert.Parameters.AddWithValue("seq", events.Select(e => e.Seq).ToArray());
        insert.Parameters.AddWithValue("id", events.Select(e => e.Id).ToArray());
        insert.Parameters.AddWithValue("ts", events.Select(e => e.Ts).ToArray());
        insert.Parameters.AddWithValue("sender", events.Select(e => e.Sender).ToArray());
        insert.Parameters.AddWithValue("dev", events.Select(e => e.Dev).ToArray());
        insert.Parameters.AddWithValue("kind", events.Select(e => e.Kind).ToArray());
        insert.Parameters.AddWithValue("cid", events.Select(e => e.Cid).ToArray());
        insert.Parameters.Add(TextArray("body", events.Select(e => e.Body)));
        insert.Parameters.Add(TextArray("e2ee", events.Select(e => e.E2ee)));
        insert.Parameters.AddWithValue("reply_to", events.Select(e => e.ReplyTo).ToArray());
        insert.Parameters.AddWithValue("target", events.Select(e => e.Target).ToArray());
        insert.Parameters.Add(TextArray("system", events.Select(e => e.System)));
        batch.BatchCommands.Add(insert);
    }

    private static NpgsqlParameter TextArray(string name, IEnumerable<string?> values) =>
        new(name, NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text) { Value = values.ToArray() };

    /// <summary>Makes the day partitions the events fall in, once per shard and day (racing nodes both succeed).</summary>
    private async Task EnsurePartitionsAsync(int shard, List<EventRecord> events, CancellationToken cancellationToken)
    {
        foreach (var day in events.Select(e => e.Ts / DayMs).Distinct())
        {
            if (_partitions.ContainsKey((shard, day)))
            {
                continue;
            }

            await using var connection = await shards[shard].OpenConnectionAsync(cancellationToken);
            var sql = string.Create(CultureInfo.InvariantCulture,
                $"CREATE TABLE IF NOT EXISTS events_d{day} PARTITION OF events FOR VALUES FROM ({day * DayMs}) TO ({(day + 1) * DayMs})");
            try
            {
                await using var command = new NpgsqlCommand(sql, connection);
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.DuplicateTable or PostgresErrorCodes.UniqueViolation)
            {
                // Another node made it at the same moment.
            }

            _partitions[(shard, day)] = true;
        }
    }

    public async ValueTask<long?> GetLastSeqAsync(string conv, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(conv), "SELECT last_seq FROM conversations WHERE conv = @conv");
        command.Parameters.AddWithValue("conv", conv);
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is long seq && seq > 0 ? seq : null;
    }

    /// <summary>
    /// Heads in one query per shard, in parallel. Conversations read without events are there with 0; those on a
    /// shard that could not be read are left out, so a shard that is down holds up nothing of the others.
    /// </summary>
    public async ValueTask<Dictionary<string, long>> GetLastSeqsAsync(IReadOnlyCollection<string> convs, CancellationToken cancellationToken = default)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        var byShard = convs.GroupBy(shards.ForConversation).ToList();
        var reads = byShard.Select(async group =>
        {
            var rows = group.ToDictionary(c => c, _ => 0L, StringComparer.Ordinal);
            try
            {
                // One index probe per conversation (LATERAL), never a scan of the table, however many are asked.
                await using var command = Command(group.Key, "SELECT k.conv, c.last_seq FROM unnest(@convs) AS k(conv) CROSS JOIN LATERAL (SELECT last_seq FROM conversations c WHERE c.conv = k.conv) c");
                command.Parameters.AddWithValue("convs", group.ToArray());
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    rows[reader.GetString(0)] = reader.GetInt64(1);
                }

                return rows;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
            {
                return [];
            }
        }).ToArray();
        foreach (var rows in await Task.WhenAll(reads))
        {
            foreach (var (conv, seq) in rows)
            {
                result[conv] = seq;
            }
        }

        return result;
    }

    public async ValueTask<Dictionary<(string Sender, string Cid), CidRecord>> FindCidsAsync(IReadOnlyCollection<(string Sender, string Cid, string Conv)> keys, CancellationToken cancellationToken = default)
    {
        var parts = await Task.WhenAll(keys.GroupBy(k => shards.ForConversation(k.Conv)).Select(async group =>
        {
            await using var command = Command(group.Key, """
                SELECT k.sender, k.cid, k.conv, e.seq, e.id, e.ts FROM unnest(@sender, @cid, @conv) AS k(sender, cid, conv)
                CROSS JOIN LATERAL (SELECT seq, id, ts FROM events e WHERE e.sender = k.sender AND e.cid = k.cid AND e.conv = k.conv LIMIT 1) e
                """);
            command.Parameters.AddWithValue("sender", group.Select(k => k.Sender).ToArray());
            command.Parameters.AddWithValue("cid", group.Select(k => k.Cid).ToArray());
            command.Parameters.AddWithValue("conv", group.Select(k => k.Conv).ToArray());
            var rows = new List<((string, string), CidRecord)>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(((reader.GetString(0), reader.GetString(1)), new CidRecord(reader.GetString(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5))));
            }

            return rows;
        }));
        var found = new Dictionary<(string, string), CidRecord>();
        foreach (var (key, record) in parts.SelectMany(p => p))
        {
            found[key] = record;
        }

        return found;
    }

    public async ValueTask<Dictionary<DeviceCursorKey, long>> GetDeviceCursorsByKeyAsync(IReadOnlyCollection<DeviceCursorKey> keys, CancellationToken cancellationToken = default)
    {
        var parts = await Task.WhenAll(keys.GroupBy(k => shards.ForConversation(k.Conv)).Select(async group =>
        {
            await using var command = Command(group.Key, """
                SELECT k.usr, k.device, k.conv, d.seq FROM unnest(@usr, @device, @conv) AS k(usr, device, conv)
                CROSS JOIN LATERAL (SELECT seq FROM device_cursors d WHERE d.usr = k.usr AND d.device = k.device AND d.conv = k.conv) d
                """);
            command.Parameters.AddWithValue("usr", group.Select(k => k.User).ToArray());
            command.Parameters.AddWithValue("device", group.Select(k => k.Device).ToArray());
            command.Parameters.AddWithValue("conv", group.Select(k => k.Conv).ToArray());
            var rows = new List<(DeviceCursorKey, long)>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((new DeviceCursorKey(reader.GetString(0), reader.GetInt32(1), reader.GetString(2)), reader.GetInt64(3)));
            }

            return rows;
        }));
        return parts.SelectMany(p => p).ToDictionary(r => r.Item1, r => r.Item2);
    }

    public async ValueTask<Dictionary<MemberCursorKey, MemberCursor>> GetMemberCursorsByKeyAsync(IReadOnlyCollection<MemberCursorKey> keys, CancellationToken cancellationToken = default)
    {
        var parts = await Task.WhenAll(keys.GroupBy(k => shards.ForConversation(k.Conv)).Select(async group =>
        {
            await using var command = Command(group.Key, """
                SELECT k.conv, k.usr, m.delivered, m.read, m.updated FROM unnest(@conv, @usr) AS k(conv, usr)
                CROSS JOIN LATERAL (SELECT delivered, read, updated FROM member_cursors m WHERE m.conv = k.conv AND m.usr = k.usr) m
                """);
            command.Parameters.AddWithValue("conv", group.Select(k => k.Conv).ToArray());
            command.Parameters.AddWithValue("usr", group.Select(k => k.User).ToArray());
            var rows = new List<(MemberCursorKey, MemberCursor)>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var user = reader.GetString(1);
                rows.Add((new MemberCursorKey(reader.GetString(0), user), new MemberCursor(user, reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4))));
            }

            return rows;
        }));
        return parts.SelectMany(p => p).ToDictionary(r => r.Item1, r => r.Item2);
    }

    public async ValueTask<CidRecord?> FindCidAsync(string sender, string cid, string? conv = null, CancellationToken cancellationToken = default)
    {
        const string Sql = "SELECT conv, seq, id, ts FROM events WHERE sender = @sender AND cid = @cid LIMIT 1";
        if (conv is not null)
        {
            // A cid is unique per (sender, conversation) here: the append that stores it is serialised per
            // conversation, not per sender (docs/protocol.md, cluster mode).
            return await FindCidOnAsync(shards.ForConversation(conv), "SELECT conv, seq, id, ts FROM events WHERE sender = @sender AND cid = @cid AND conv = @conv LIMIT 1", sender, cid, cancellationToken, conv);
        }

        var found = await Task.WhenAll(Enumerable.Range(0, shards.Count).Select(s => FindCidOnAsync(s, Sql, sender, cid, cancellationToken)));
        return found.FirstOrDefault(f => f is not null);
    }

    private async Task<CidRecord?> FindCidOnAsync(int shard, string sql, string sender, string cid, CancellationToken cancellationToken, string? conv = null)
    {
        await using var command = Command(shard, sql);
        command.Parameters.AddWithValue("sender", sender);
        command.Parameters.AddWithValue("cid", cid);
        if (conv is not null)
        {
            command.Parameters.AddWithValue("conv", conv);
        }

        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new CidRecord(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3)) : null;
    }

    private const string EventColumns = "seq, id, ts, sender, dev, kind, cid, body, e2ee, reply_to, target, system";

    public async ValueTask<EventRecord?> GetEventAsync(string conv, long seq, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(conv), $"SELECT {EventColumns} FROM events WHERE conv = @conv AND seq = @seq LIMIT 1");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("seq", seq);
        var list = await ReadEventsAsync(command, conv, cancellationToken);
        return list.Count > 0 ? list[0] : null;
    }

    public async ValueTask<bool> IsDeletedAsync(string conv, long target, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(conv), "SELECT EXISTS (SELECT 1 FROM events WHERE conv = @conv AND kind = 'delete' AND target = @target)");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("target", target);
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async ValueTask<List<EventRecord>> ReadAfterAsync(string conv, long after, long upTo, int limit, CancellationToken cancellationToken = default)
    {
        if (after >= upTo || limit <= 0)
        {
            return [];
        }

        await using var command = Command(shards.ForConversation(conv), $"SELECT {EventColumns} FROM events WHERE conv = @conv AND seq > @after AND seq <= @upTo ORDER BY seq LIMIT @limit");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("after", after);
        command.Parameters.AddWithValue("upTo", upTo);
        command.Parameters.AddWithValue("limit", limit);
        return await ReadEventsAsync(command, conv, cancellationToken);
    }

    public async ValueTask<List<EventRecord>> ReadBeforeAsync(string conv, long before, long minSeq, long minTs, int limit, CancellationToken cancellationToken = default)
    {
        if (before <= minSeq || before <= 1 || limit <= 0)
        {
            return [];
        }

        await using var command = Command(shards.ForConversation(conv), $"SELECT {EventColumns} FROM events WHERE conv = @conv AND seq < @before AND seq >= @minSeq AND ts >= @minTs ORDER BY seq DESC LIMIT @limit");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("before", before);
        command.Parameters.AddWithValue("minSeq", minSeq);
        command.Parameters.AddWithValue("minTs", minTs);
        command.Parameters.AddWithValue("limit", limit);
        return await ReadEventsAsync(command, conv, cancellationToken);
    }

    public async ValueTask<long?> NextOwnMessageAsync(string conv, string author, long after, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(conv), "SELECT seq FROM events WHERE conv = @conv AND seq > @after AND sender = @author AND kind IN ('text', 'media') ORDER BY seq LIMIT 1");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("after", after);
        command.Parameters.AddWithValue("author", author);
        return await command.ExecuteScalarAsync(cancellationToken) is long seq ? seq : null;
    }

    public async ValueTask<long> CountUnreadAsync(string conv, string user, long after, long upTo, CancellationToken cancellationToken = default)
    {
        if (after >= upTo)
        {
            return 0;
        }

        await using var command = Command(shards.ForConversation(conv), "SELECT count(*) FROM events WHERE conv = @conv AND seq > @after AND seq <= @upTo AND sender <> @user AND kind IN ('text', 'media')");
        command.Parameters.AddWithValue("conv", conv);
        command.Parameters.AddWithValue("after", after);
        command.Parameters.AddWithValue("upTo", upTo);
        command.Parameters.AddWithValue("user", user);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Every shard's memberships of the user. A shard that cannot be read is left out (its conversations cannot
    /// change while it is down); the device's cursors for them stay where they were, so nothing is skipped.
    /// Only when no shard answers is this a failure.
    /// </summary>
    public async ValueTask<List<Membership>> GetMembershipsAsync(string user, CancellationToken cancellationToken = default)
    {
        var perShard = await Tolerant(Enumerable.Range(0, shards.Count).Select(async shard =>
        {
            await using var command = Command(shard, """
                SELECT m.conv, m.role, m.joined_seq, m.removed_seq, coalesce(c.last_seq, 0)
                FROM members m LEFT JOIN conversations c ON c.conv = m.conv WHERE m.usr = @user
                """);
            command.Parameters.AddWithValue("user", user);
            var list = new List<Membership>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var conv = reader.GetString(0);
                list.Add(new Membership(conv, Names.IsGroup(conv) ? "group" : "direct", reader.GetString(1), reader.GetInt64(2),
                    reader.IsDBNull(3) ? null : reader.GetInt64(3), reader.GetInt64(4)));
            }

            return list;
        }));
        return [.. perShard.SelectMany(l => l)];
    }

    public async ValueTask<GroupRecord?> GetGroupAsync(string conv, CancellationToken cancellationToken = default)
    {
        await using var connection = await shards[shards.ForConversation(conv)].OpenConnectionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT name, created FROM groups WHERE conv = @conv") { Parameters = { new("conv", conv) } },
                new NpgsqlBatchCommand("SELECT usr, role, joined_seq, removed_seq, joined_ts FROM members WHERE conv = @conv ORDER BY usr") { Parameters = { new("conv", conv) } },
            },
        };
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        var (name, created) = (reader.GetString(0), reader.GetInt64(1));
        await reader.NextResultAsync(cancellationToken);
        var members = new List<MemberRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            members.Add(new MemberRecord(conv, reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.IsDBNull(3) ? null : reader.GetInt64(3), reader.GetInt64(4)));
        }

        return new GroupRecord(conv, name, created, members);
    }

    public async ValueTask<Dictionary<string, long>> GetDeviceCursorsAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        var perShard = await Tolerant(Enumerable.Range(0, shards.Count).Select(async shard =>
        {
            await using var command = Command(shard, "SELECT conv, seq FROM device_cursors WHERE usr = @user AND device = @device");
            command.Parameters.AddWithValue("user", user);
            command.Parameters.AddWithValue("device", device);
            var rows = new List<(string, long)>();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1)));
            }

            return rows;
        }));
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (conv, seq) in perShard.SelectMany(r => r))
        {
            map[conv] = seq;
        }

        return map;
    }

    public async ValueTask<long?> GetDeviceCursorAsync(DeviceCursorKey key, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(key.Conv), "SELECT seq FROM device_cursors WHERE usr = @user AND device = @device AND conv = @conv");
        command.Parameters.AddWithValue("user", key.User);
        command.Parameters.AddWithValue("device", key.Device);
        command.Parameters.AddWithValue("conv", key.Conv);
        return await command.ExecuteScalarAsync(cancellationToken) is long seq ? seq : null;
    }

    public async ValueTask<List<MemberCursor>> GetMemberCursorsAsync(string conv, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(conv), "SELECT usr, delivered, read, updated FROM member_cursors WHERE conv = @conv");
        command.Parameters.AddWithValue("conv", conv);
        var list = new List<MemberCursor>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(new MemberCursor(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3)));
        }

        return list;
    }

    public async ValueTask<MemberCursor?> GetMemberCursorAsync(MemberCursorKey key, CancellationToken cancellationToken = default)
    {
        await using var command = Command(shards.ForConversation(key.Conv), "SELECT delivered, read, updated FROM member_cursors WHERE conv = @conv AND usr = @user");
        command.Parameters.AddWithValue("conv", key.Conv);
        command.Parameters.AddWithValue("user", key.User);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new MemberCursor(key.User, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2)) : null;
    }

    /// <summary>
    /// Drops every day partition that ends at or before <paramref name="olderThanTs"/> (detached first, so appends
    /// to the newer days never wait on it); a day that straddles the limit is kept whole until it has passed.
    /// Conversations keep their heads, so seqs are never reused. One node at a time purges a shard (an advisory lock).
    /// </summary>
    public async ValueTask<int> PurgeAsync(long olderThanTs, int maxEvents, CancellationToken cancellationToken = default)
    {
        var purged = 0;
        for (var shard = 0; shard < shards.Count; shard++)
        {
            NpgsqlConnection connection;
            try
            {
                connection = await shards[shard].OpenConnectionAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                continue; // a shard that is down is purged once it is back
            }

            await using var open = connection;
            await using (var claim = new NpgsqlCommand("SELECT pg_try_advisory_lock(7401002)", connection))
            {
                if (!(bool)(await claim.ExecuteScalarAsync(cancellationToken))!)
                {
                    continue; // another node is purging this shard now
                }
            }

            try
            {
                purged += await PurgeShardAsync(shard, connection, olderThanTs, cancellationToken);
            }
            finally
            {
                await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock(7401002)", connection);
                await release.ExecuteScalarAsync(CancellationToken.None);
            }
        }

        return purged;
    }

    private async Task<int> PurgeShardAsync(int shard, NpgsqlConnection connection, long olderThanTs, CancellationToken cancellationToken)
    {
        var purged = 0;
        {
            var days = new List<long>();
            await using (var list = new NpgsqlCommand("""
                SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                WHERE p.relname = 'events' AND p.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'events\_d%'
                """, connection))
            await using (var reader = await list.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    if (long.TryParse(reader.GetString(0).AsSpan("events_d".Length), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var day) && (day + 1) * DayMs <= olderThanTs)
                    {
                        days.Add(day);
                    }
                }
            }

            foreach (var day in days.Order())
            {
                var table = string.Create(CultureInfo.InvariantCulture, $"events_d{day}");
                await using (var detach = new NpgsqlCommand($"ALTER TABLE events DETACH PARTITION {table} CONCURRENTLY", connection))
                {
                    await detach.ExecuteNonQueryAsync(cancellationToken);
                }

                _partitions.TryRemove((shard, day), out _);
                await using var drop = new NpgsqlCommand($"SELECT count(*) FROM {table}; DROP TABLE {table}", connection);
                purged += (int)(long)(await drop.ExecuteScalarAsync(cancellationToken))!;
            }
        }

        return purged;
    }

    /// <summary>
    /// Ready while at least one shard takes a synchronous write: a shard that is down refuses its own
    /// conversations on every node alike, so taking every node out of a load balancer for it would help no one.
    /// Throws, naming them, only when no shard can write.
    /// </summary>
    public async ValueTask ProbeAsync(CancellationToken cancellationToken = default)
    {
        var failures = new List<string>();
        for (var shard = 0; shard < shards.Count; shard++)
        {
            try
            {
                await using var command = Command(shard, "INSERT INTO sb_meta (key, value) VALUES ('probe', now()::text) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value");
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                failures.Add($"shard {shard + 1} ({shards.Describe(shard)}): {ex.Message}");
            }
        }

        if (failures.Count == shards.Count)
        {
            throw new ShardUnavailableException(0, "no PostgreSQL shard can write: " + string.Join("; ", failures));
        }
    }

    private NpgsqlCommand Command(int shard, string sql) => shards[shard].CreateCommand(sql);

    /// <summary>The answers of the shards that answered; throws only when none did.</summary>
    internal static async Task<List<T>> Tolerant<T>(IEnumerable<Task<T>> reads)
    {
        var tasks = reads.ToList();
        try
        {
            await Task.WhenAll(tasks);
        }
        catch (Exception) when (tasks.Any(t => t.IsCompletedSuccessfully))
        {
        }

        return [.. tasks.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result)];
    }

    private static async Task<List<EventRecord>> ReadEventsAsync(NpgsqlCommand command, string conv, CancellationToken cancellationToken)
    {
        var list = new List<EventRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(new EventRecord
            {
                Conv = conv,
                Seq = reader.GetInt64(0),
                Id = reader.GetInt64(1),
                Ts = reader.GetInt64(2),
                Sender = reader.GetString(3),
                Dev = reader.GetInt32(4),
                Kind = reader.GetString(5),
                Cid = reader.GetString(6),
                Body = reader.IsDBNull(7) ? null : reader.GetString(7),
                E2ee = reader.IsDBNull(8) ? null : reader.GetString(8),
                ReplyTo = reader.IsDBNull(9) ? null : reader.GetInt64(9),
                Target = reader.IsDBNull(10) ? null : reader.GetInt64(10),
                System = reader.IsDBNull(11) ? null : reader.GetString(11),
            });
        }

        return list;
    }
}
