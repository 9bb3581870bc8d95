using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

internal sealed partial class SqliteMessageStore
{
    /// <summary>Last seq per conversation, as the writer knows it (including uncommitted, within a batch).</summary>
    private readonly Dictionary<string, long> _lastSeq = new(StringComparer.Ordinal);

    /// <summary>Canonical direct conversations whose two users are known to exist (users are never deleted).</summary>
    private readonly HashSet<string> _knownDirect = new(StringComparer.Ordinal);

    private readonly Dictionary<string, string> _touched = new(StringComparer.Ordinal);

    /// <summary>
    /// Member cursors as the writer (their only writer) last wrote them, so a recv costs one write and no read.
    /// Dropped whole when a batch fails (it may hold uncommitted values) or when it reaches its size.
    /// </summary>
    private readonly Dictionary<(string Conv, string User), (long Delivered, long Read)> _memberCursors = [];

    private const int MemberCursorCacheSize = 200_000;

    /// <summary>Group memberships changed in the current batch, published only after it commits.</summary>
    private readonly Dictionary<string, GroupSnapshot> _pendingGroups = new(StringComparer.Ordinal);

    private void WriteLoop()
    {
        using var connection = _database.Open();
        using var statements = new WriterStatements(connection);
        var reader = _queue.Reader;
        var batch = new List<StoreCommand>(_options.MaxBatch);
        while (true)
        {
            if (!reader.TryPeek(out _))
            {
                var more = reader.WaitToReadAsync();
                if (!(more.IsCompleted ? more.Result : more.AsTask().GetAwaiter().GetResult()))
                {
                    return;
                }
            }

            batch.Clear();
            while (batch.Count < _options.MaxBatch && reader.TryRead(out var command))
            {
                batch.Add(command);
            }

            var started = Stopwatch.GetTimestamp();
            CommitBatch(connection, statements, batch);
            _metrics.PersistLatency.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            _metrics.BatchSize.Observe(batch.Count);

            try
            {
                _observer!.OnCommitted(batch);
            }
            catch (Exception ex)
            {
                LogObserverFailed(ex);
            }
        }
    }

    private void CommitBatch(SqliteConnection connection, WriterStatements statements, List<StoreCommand> batch)
    {
        _touched.Clear();
        _pendingGroups.Clear();
        try
        {
            using var transaction = connection.BeginTransaction(deferred: false);
            statements.Bind(transaction);
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var command in batch)
            {
                switch (command)
                {
                    case AppendCommand append:
                        Append(connection, transaction, statements, append, now);
                        break;
                    case CursorCommand cursor:
                        MoveCursor(connection, transaction, statements, cursor, now);
                        break;
                    case GroupCommand group:
                        ChangeGroup(statements, group, now);
                        break;
                    case TouchCommand touch:
                        statements.Touch(touch.User, touch.Device, touch.Ts);
                        break;
                }
            }

            foreach (var (conv, kind) in _touched)
            {
                statements.UpsertConversation(conv, kind, _lastSeq[conv], now);
            }

            transaction.Commit();
            foreach (var (_, group) in _pendingGroups)
            {
                _groups.Publish(group);
            }
        }
        catch (Exception ex)
        {
            // Nothing of this batch is durable: forget the in-memory seqs (they are reloaded from the store) and
            // tell every sender to retry with the same cid.
            LogBatchFailed(ex, batch.Count);
            _lastSeq.Clear();
            _memberCursors.Clear();
            foreach (var command in batch)
            {
                if (command.ErrorCode is not null)
                {
                    continue;
                }

                command.Fail(ErrorCodes.Unavailable, "the event could not be made durable; retry with the same cid");
                if (command is AppendCommand append)
                {
                    append.Ack = null;
                    append.Event = null;
                }
                else if (command is CursorCommand cursor)
                {
                    cursor.DeliveredAdvancedTo = cursor.ReadAdvancedTo = null;
                }
                else if (command is GroupCommand group)
                {
                    group.Event = null;
                    group.Group = null;
                }
            }
        }
    }

    private Membership? Access(SqliteConnection connection, SqliteTransaction transaction, StoreCommand command)
    {
        var conv = command.Conv;
        var user = command.Origin.User;
        var cached = _lastSeq.TryGetValue(conv, out var known) ? known : (long?)null;
        if (_knownDirect.Contains(conv) && Names.TryParseDirect(conv, out var a, out var b))
        {
            if (user != a && user != b)
            {
                command.Fail(ErrorCodes.Forbidden, "not a member of this conversation");
                return null;
            }

            cached ??= ConversationAccess.LastSeq(connection, transaction, conv) ?? 0;
            _lastSeq[conv] = cached.Value;
            return new Membership(conv, "direct", "member", 1, null, cached.Value);
        }

        if (Names.IsGroup(conv))
        {
            return GroupAccess(connection, transaction, command, cached);
        }

        var access = ConversationAccess.Resolve(connection, transaction, conv, user, cached);
        if (access.Membership is not { } membership)
        {
            command.Fail(access.ErrorCode!, access.ErrorMessage!);
            return null;
        }

        if (membership.Kind == "direct")
        {
            _knownDirect.Add(conv);
        }

        _lastSeq[conv] = membership.LastSeq;
        return membership;
    }

    /// <summary>The writer's view of a group: this batch's uncommitted change if any, else the committed one.</summary>
    private GroupSnapshot? Group(string conv) =>
        _pendingGroups.TryGetValue(conv, out var pending) ? pending : _groups.Get(conv);

    private Membership? GroupAccess(SqliteConnection connection, SqliteTransaction transaction, StoreCommand command, long? cached)
    {
        if (Group(command.Conv) is not { } group)
        {
            command.Fail(ErrorCodes.NotFound, "no such conversation");
            return null;
        }

        var last = cached ?? ConversationAccess.LastSeq(connection, transaction, command.Conv) ?? 0;
        _lastSeq[command.Conv] = last;
        var user = command.Origin.User;
        if (group.Current.TryGetValue(user, out var member))
        {
            return new Membership(command.Conv, "group", member.Role, member.JoinedSeq, null, last);
        }

        if (group.Former.TryGetValue(user, out var former))
        {
            return new Membership(command.Conv, "group", Roles.Member, former.JoinedSeq, former.RemovedSeq, last);
        }

        command.Fail(ErrorCodes.Forbidden, "not a member of this conversation");
        return null;
    }

    private void Append(SqliteConnection connection, SqliteTransaction transaction, WriterStatements statements, AppendCommand command, long now)
    {
        var user = command.Origin.User;
        if (statements.FindByCid(user, command.Cid) is { } original)
        {
            command.Ack = original;
            return;
        }

        if (command.PendingErrorCode is not null)
        {
            command.Fail(command.PendingErrorCode, command.PendingErrorMessage ?? command.PendingErrorCode);
            return;
        }

        if (Access(connection, transaction, command) is not { } member)
        {
            return;
        }

        if (!member.IsCurrent)
        {
            command.Fail(ErrorCodes.Forbidden, "no longer a member of this conversation");
            return;
        }

        if (command.ReplyTo is { } replyTo && (replyTo < member.FirstSeq || replyTo > member.LastSeq || statements.GetEventHead(command.Conv, replyTo) is null))
        {
            command.Fail(ErrorCodes.NotFound, "reply_to is not an event you can see");
            return;
        }

        if (command.Target is { } target && !CheckTarget(statements, command, member, target, now))
        {
            return;
        }

        if (command.Rate?.TryTake(now) is > 0 and var retryAfter)
        {
            command.RetryAfterMs = retryAfter;
            command.Fail(ErrorCodes.RateLimited, "too many sends; retry later");
            return;
        }

        var seq = member.LastSeq + 1;
        var id = _ids.Next();
        var e2ee = command.E2ee?.GetRawText();
        statements.InsertEvent(command.Conv, seq, id, now, user, command.Origin.Device, command.Kind, command.Cid, command.Body, e2ee, command.ReplyTo, command.Target, null);
        _lastSeq[command.Conv] = seq;
        if (!_touched.ContainsKey(command.Conv))
        {
            _touched[command.Conv] = member.Kind;
        }

        if (seq == 1 && member.Kind == "direct" && Names.TryParseDirect(command.Conv, out var a, out var b))
        {
            statements.InsertMember(command.Conv, a, now);
            statements.InsertMember(command.Conv, b, now);
        }

        var idText = id.ToString(CultureInfo.InvariantCulture);
        command.Ack = new AckFrame(command.Cid, command.Conv, seq, idText, now, false);
        command.Event = new MsgFrame
        {
            T = FrameTypes.Msg,
            Conv = command.Conv,
            Seq = seq,
            Id = idText,
            Ts = now,
            From = user,
            Dev = command.Origin.Device,
            Kind = command.Kind,
            Cid = command.Cid,
            Body = command.Body,
            E2ee = command.E2ee,
            ReplyTo = command.ReplyTo,
            Target = command.Target,
        };
        command.Members = member.Kind == "direct" ? DirectMembers(command.Conv) : Group(command.Conv)!.Users;
    }

    private bool CheckTarget(WriterStatements statements, AppendCommand command, Membership member, long target, long now)
    {
        if (target < member.FirstSeq || target > member.LastSeq || statements.GetEventHead(command.Conv, target) is not { } head)
        {
            command.Fail(ErrorCodes.NotFound, "no such target");
            return false;
        }

        if (head.Kind is not (EventKinds.Text or EventKinds.Media) || statements.IsDeleted(command.Conv, target))
        {
            command.Fail(ErrorCodes.NotFound, "the target is not a message that can be changed");
            return false;
        }

        var isAuthor = head.Sender == command.Origin.User;
        if (command.Kind == EventKinds.Edit)
        {
            if (!isAuthor)
            {
                command.Fail(ErrorCodes.Forbidden, "only the author may edit a message");
                return false;
            }

            if (now - head.Ts > _messaging.EditWindowMinutes * 60_000L)
            {
                command.Fail(ErrorCodes.Forbidden, "the edit window has passed");
                return false;
            }

            return true;
        }

        if (isAuthor && now - head.Ts <= _messaging.DeleteWindowHours * 3_600_000L)
        {
            return true;
        }

        if (!isAuthor && member.Kind == "group" && member.Role == "admin")
        {
            return true;
        }

        command.Fail(ErrorCodes.Forbidden, isAuthor ? "the delete window has passed" : "only the author or a group admin may delete a message");
        return false;
    }

    private void MoveCursor(SqliteConnection connection, SqliteTransaction transaction, WriterStatements statements, CursorCommand command, long now)
    {
        if (Access(connection, transaction, command) is not { } member)
        {
            return;
        }

        // Clamp to what the member can see; a lower seq than before is ignored (cursors never move back).
        var seq = Math.Min(command.Seq, member.LastVisible);
        if (seq < member.FirstSeq)
        {
            return;
        }

        var user = command.Origin.User;
        statements.AdvanceDeviceCursor(user, command.Origin.Device, command.Conv, seq);
        var key = (command.Conv, user);
        if (!_memberCursors.TryGetValue(key, out var current))
        {
            if (_memberCursors.Count >= MemberCursorCacheSize)
            {
                _memberCursors.Clear(); // bounded: the store is the truth, the cache only saves a read
            }

            current = statements.GetMemberCursor(command.Conv, user);
        }

        var (delivered, read) = current;
        var newDelivered = Math.Max(delivered, seq);
        var newRead = command.IsRead ? Math.Max(read, seq) : read;
        if (newDelivered == delivered && newRead == read)
        {
            return;
        }

        statements.SetMemberCursor(command.Conv, user, newDelivered, newRead, now);
        _memberCursors[key] = (newDelivered, newRead);
        if (newDelivered != delivered)
        {
            command.DeliveredAdvancedTo = newDelivered;
        }

        if (newRead != read)
        {
            command.ReadAdvancedTo = newRead;
        }

        command.Members = member.Kind == "direct" ? DirectMembers(command.Conv) : Group(command.Conv)!.Users;
    }

    private static string[] DirectMembers(string conv)
    {
        _ = Names.TryParseDirect(conv, out var a, out var b);
        return [a, b];
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "Group commit of {Count} commands failed; all were refused as unavailable")]
    private partial void LogBatchFailed(Exception exception, int count);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Commit observer failed")]
    private partial void LogObserverFailed(Exception exception);

    /// <summary>The writer's prepared statements, reused across batches.</summary>
    private sealed class WriterStatements : IDisposable
    {
        private readonly SqliteCommand _findByCid;
        private readonly SqliteCommand _insertEvent;
        private readonly SqliteCommand _upsertConversation;
        private readonly SqliteCommand _insertMember;
        private readonly SqliteCommand _eventHead;
        private readonly SqliteCommand _isDeleted;
        private readonly SqliteCommand _deviceCursor;
        private readonly SqliteCommand _getMemberCursor;
        private readonly SqliteCommand _setMemberCursor;
        private readonly SqliteCommand _insertConversation;
        private readonly SqliteCommand _renameConversation;
        private readonly SqliteCommand _setGroupMember;
        private readonly SqliteCommand _removeGroupMember;
        private readonly SqliteCommand _setRole;
        private readonly SqliteCommand _userExists;
        private readonly SqliteCommand _touchDevice;
        private readonly SqliteCommand _lastSeen;
        private readonly SqliteCommand[] _all;

        public WriterStatements(SqliteConnection connection)
        {
            _findByCid = Make(connection, "SELECT cid, conv, seq, id, ts FROM events WHERE sender = $1 AND cid = $2", 2);
            _insertEvent = Make(connection, "INSERT INTO events(conv, seq, id, ts, sender, dev, kind, cid, body, e2ee, reply_to, target, system) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)", 13);
            _insertConversation = Make(connection, "INSERT INTO conversations(conv, kind, name, last_seq, created) VALUES ($1, 'group', $2, 0, $3)", 3);
            _renameConversation = Make(connection, "UPDATE conversations SET name = $2 WHERE conv = $1", 2);
            _setGroupMember = Make(connection, "INSERT INTO members(conv, user, role, joined_seq, removed_seq, joined_ts) VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT(conv, user) DO UPDATE SET role = excluded.role, joined_seq = excluded.joined_seq, removed_seq = NULL, joined_ts = excluded.joined_ts", 5);
            _removeGroupMember = Make(connection, "UPDATE members SET removed_seq = $3 WHERE conv = $1 AND user = $2", 3);
            _setRole = Make(connection, "UPDATE members SET role = $3 WHERE conv = $1 AND user = $2", 3);
            _userExists = Make(connection, "SELECT 1 FROM users WHERE user = $1", 1);
            _touchDevice = Make(connection, "UPDATE devices SET last_active = $3 WHERE user = $1 AND device = $2", 3);
            _lastSeen = Make(connection, "UPDATE users SET last_seen = $2 WHERE user = $1", 2);
            _upsertConversation = Make(connection, "INSERT INTO conversations(conv, kind, last_seq, created) VALUES ($1, $2, $3, $4) ON CONFLICT(conv) DO UPDATE SET last_seq = excluded.last_seq", 4);
            _insertMember = Make(connection, "INSERT OR IGNORE INTO members(conv, user, role, joined_seq, joined_ts) VALUES ($1, $2, 'member', 1, $3)", 3);
            _eventHead = Make(connection, "SELECT sender, kind, ts FROM events WHERE conv = $1 AND seq = $2", 2);
            _isDeleted = Make(connection, "SELECT 1 FROM events WHERE conv = $1 AND target = $2 AND kind = 'delete' LIMIT 1", 2);
            _deviceCursor = Make(connection, "INSERT INTO device_cursors(user, device, conv, delivered) VALUES ($1, $2, $3, $4) ON CONFLICT DO UPDATE SET delivered = max(delivered, excluded.delivered)", 4);
            _getMemberCursor = Make(connection, "SELECT delivered, read FROM member_cursors WHERE conv = $1 AND user = $2", 2);
            _setMemberCursor = Make(connection, "INSERT INTO member_cursors(conv, user, delivered, read, updated) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO UPDATE SET delivered = excluded.delivered, read = excluded.read, updated = excluded.updated", 5);
            _all = [_findByCid, _insertEvent, _upsertConversation, _insertMember, _eventHead, _isDeleted, _deviceCursor, _getMemberCursor, _setMemberCursor,
                _insertConversation, _renameConversation, _setGroupMember, _removeGroupMember, _setRole, _userExists, _touchDevice, _lastSeen];
        }

        public void Bind(SqliteTransaction transaction)
        {
            foreach (var command in _all)
            {
                command.Transaction = transaction;
            }
        }

        public AckFrame? FindByCid(string user, string cid)
        {
            Set(_findByCid, user, cid);
            using var reader = _findByCid.ExecuteReader();
            return reader.Read()
                ? new AckFrame(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3).ToString(CultureInfo.InvariantCulture), reader.GetInt64(4), true)
                : null;
        }

        public void InsertEvent(string conv, long seq, long id, long ts, string sender, int dev, string kind, string cid, string? body, string? e2ee, long? replyTo, long? target, string? system)
        {
            Set(_insertEvent, conv, seq, id, ts, sender, dev, kind, cid, body, e2ee, replyTo, target, system);
            _insertEvent.ExecuteNonQuery();
        }

        public void InsertGroup(string conv, string name, long now)
        {
            Set(_insertConversation, conv, name, now);
            _insertConversation.ExecuteNonQuery();
        }

        public void RenameGroup(string conv, string name)
        {
            Set(_renameConversation, conv, name);
            _renameConversation.ExecuteNonQuery();
        }

        public void SetGroupMember(string conv, GroupMember member)
        {
            Set(_setGroupMember, conv, member.User, member.Role, member.JoinedSeq, member.JoinedTs);
            _setGroupMember.ExecuteNonQuery();
        }

        public void RemoveGroupMember(string conv, string user, long seq)
        {
            Set(_removeGroupMember, conv, user, seq);
            _removeGroupMember.ExecuteNonQuery();
        }

        public void SetRole(string conv, string user, string role)
        {
            Set(_setRole, conv, user, role);
            _setRole.ExecuteNonQuery();
        }

        public void Touch(string user, int? device, long ts)
        {
            if (device is { } d)
            {
                Set(_touchDevice, user, d, ts);
                _touchDevice.ExecuteNonQuery();
            }
            else
            {
                Set(_lastSeen, user, ts);
                _lastSeen.ExecuteNonQuery();
            }
        }

        public bool UserExists(string user)
        {
            Set(_userExists, user);
            return _userExists.ExecuteScalar() is not null;
        }

        public void UpsertConversation(string conv, string kind, long lastSeq, long now)
        {
            Set(_upsertConversation, conv, kind, lastSeq, now);
            _upsertConversation.ExecuteNonQuery();
        }

        public void InsertMember(string conv, string user, long now)
        {
            Set(_insertMember, conv, user, now);
            _insertMember.ExecuteNonQuery();
        }

        public (string Sender, string Kind, long Ts)? GetEventHead(string conv, long seq)
        {
            Set(_eventHead, conv, seq);
            using var reader = _eventHead.ExecuteReader();
            return reader.Read() ? (reader.GetString(0), reader.GetString(1), reader.GetInt64(2)) : null;
        }

        public bool IsDeleted(string conv, long target)
        {
            Set(_isDeleted, conv, target);
            return _isDeleted.ExecuteScalar() is not null;
        }

        public void AdvanceDeviceCursor(string user, int device, string conv, long seq)
        {
            Set(_deviceCursor, user, device, conv, seq);
            _deviceCursor.ExecuteNonQuery();
        }

        public (long Delivered, long Read) GetMemberCursor(string conv, string user)
        {
            Set(_getMemberCursor, conv, user);
            using var reader = _getMemberCursor.ExecuteReader();
            return reader.Read() ? (reader.GetInt64(0), reader.GetInt64(1)) : (0, 0);
        }

        public void SetMemberCursor(string conv, string user, long delivered, long read, long now)
        {
            Set(_setMemberCursor, conv, user, delivered, read, now);
            _setMemberCursor.ExecuteNonQuery();
        }

        public void Dispose()
        {
            foreach (var command in _all)
            {
                command.Dispose();
            }
        }

        private static SqliteCommand Make(SqliteConnection connection, string sql, int parameters)
        {
            var command = connection.CreateCommand();
            command.CommandText = sql;
            for (var i = 1; i <= parameters; i++)
            {
                command.Parameters.Add(new SqliteParameter("$" + i.ToString(CultureInfo.InvariantCulture), null));
            }

            return command;
        }

        private static void Set(SqliteCommand command, params ReadOnlySpan<object?> values)
        {
            for (var i = 0; i < values.Length; i++)
            {
                command.Parameters[i].Value = values[i] ?? DBNull.Value;
            }
        }
    }
}
