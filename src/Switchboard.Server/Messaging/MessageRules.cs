using System.Globalization;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// Every rule of the message path, in the protocol's order, for one command at a time: duplicate, size, access,
/// reply and target visibility, the edit and delete windows, the rate, then the next seq. What a command writes
/// goes into the batch's <see cref="StoreBatch"/>; what it answers goes onto the command. The rules see their
/// own batch and the batches still being written (a reply to, or a duplicate of, an event earlier in the same
/// batch) through batch-local state (<see cref="BatchState"/>) that is promoted to the caches only once its batch
/// is durable (<see cref="Committed"/>), and dropped if it is not (<see cref="Failed"/>), so the caches only ever
/// hold committed state. Runs on the sequencer's thread only.
/// </summary>
internal sealed partial class MessageRules
{
    private readonly IMessageStore _store;
    private readonly IAccountStore _accounts;
    private readonly GroupDirectory _groups;
    private readonly MessagingOptions _options;
    private readonly IdGenerator _ids;

    // Committed state, bounded; the store answers a miss. Keyed by hashes, so that entries hold no references
    // (see CacheKey).
    private readonly BoundedCache<CacheKey, long> _lastSeq;
    private readonly BoundedCache<CacheKey, long> _deviceCursors;
    private readonly BoundedCache<CacheKey, CursorValues> _memberCursors;
    private readonly BoundedCache<CacheKey, bool> _knownUsers;

    // The batch being decided, and the batches decided before it that are not yet known to be durable: later
    // commands see them, as they would see committed state.
    private BatchState _current = new();
    private readonly List<BatchState> _inFlight = [];

    public MessageRules(IMessageStore store, IAccountStore accounts, GroupDirectory groups, IOptions<MessagingOptions> options, IdGenerator ids)
    {
        _store = store;
        _accounts = accounts;
        _groups = groups;
        _options = options.Value;
        _ids = ids;
        _lastSeq = new BoundedCache<CacheKey, long>(_options.ConversationCacheEntries);
        _deviceCursors = new BoundedCache<CacheKey, long>(_options.CursorCacheEntries);
        _memberCursors = new BoundedCache<CacheKey, CursorValues>(_options.CursorCacheEntries);
        _knownUsers = new BoundedCache<CacheKey, bool>(_options.UserCacheEntries);
    }

    /// <summary>Entries held by the caches, for the metrics.</summary>
    public int CachedEntries => _lastSeq.Count + _deviceCursors.Count + _memberCursors.Count + _knownUsers.Count;

    /// <summary>Starts deciding a new batch into <paramref name="state"/>.</summary>
    public void Begin(BatchState state) => _current = state;

    /// <summary>The current batch is decided and handed to be written: later batches see it until it completes.</summary>
    public void Seal() => _inFlight.Add(_current);

    public ValueTask ApplyAsync(WriteCommand command, long now) => command switch
    {
        AppendCommand append => AppendAsync(append, now),
        CursorCommand cursor => MoveCursorAsync(cursor, now),
        GroupCommand group => ChangeGroupAsync(group, now),
        NoticeCommand notice => NoticeAsync(notice, now),
        _ => throw new ArgumentException($"unknown command {command.GetType().Name}", nameof(command)),
    };

    /// <summary>The oldest batch in flight is durable: its seqs and cursors become the committed state.</summary>
    /// <remarks>Its group changes were published by whoever committed it, before anything was delivered.</remarks>
    public void Committed(BatchState state)
    {
        if (_inFlight.Count == 0 || _inFlight[0] != state)
        {
            throw new InvalidOperationException("batches complete in the order they were sealed");
        }

        _inFlight.RemoveAt(0);
        foreach (var (conv, seq) in state.Seqs)
        {
            _lastSeq.Set(CacheKey.Of(conv), seq);
        }

        foreach (var (key, delivered) in state.Writes.DeviceCursors)
        {
            _deviceCursors.Set(KeyOf(key), delivered);
        }

        foreach (var (key, cursor) in state.Writes.MemberCursors)
        {
            _memberCursors.Set(KeyOf(key), new CursorValues(cursor));
        }
    }

    /// <summary>
    /// A batch failed, and with it every batch decided after it (they may build on its seqs). Their state goes;
    /// the caches never held it. But a write whose fsync failed may still have reached the log and be there after
    /// a reopen, so every cached value such a batch could have moved (last seqs, cursors, the groups it changed)
    /// is dropped and read again from the store.
    /// </summary>
    public void Failed()
    {
        foreach (var state in _inFlight)
        {
            foreach (var conv in state.Groups.Keys)
            {
                _groups.Forget(conv);
            }
        }

        _inFlight.Clear();
        _lastSeq.Clear();
        _deviceCursors.Clear();
        _memberCursors.Clear();
    }

    // Cluster mode: the cids of this batch's sends, looked up together before it is decided (the deciding thread's).
    private readonly HashSet<(string Sender, string Cid)> _cidsLookedUp = [];
    private Dictionary<(string Sender, string Cid), CidRecord> _cidsFound = [];

    /// <summary>
    /// With other writers on the store (cluster mode), before a batch is decided: everything its commands will
    /// read that is not cached, in one query per shard and kind, all at once (a store round trip per command on
    /// the deciding thread would bound a node at a few thousand commands a second). The heads of its
    /// conversations are read in any case: a head that is not the cached one means another node appended, so the
    /// cached head and the group (its members may have changed) are read again. A head that could not be read (its
    /// shard is down) keeps what is cached; the commit to that shard fails anyway.
    /// </summary>
    public async ValueTask PrepareAsync(IReadOnlyList<WriteCommand> batch)
    {
        _cidsLookedUp.Clear();
        _cidsFound = [];
        var convs = new HashSet<string>(StringComparer.Ordinal);
        var cids = new List<(string, string, string)>();
        var deviceKeys = new HashSet<DeviceCursorKey>();
        var memberKeys = new HashSet<MemberCursorKey>();
        foreach (var command in batch)
        {
            if (command is GroupCommand { Op: GroupOp.Create })
            {
                continue; // a new group has no head yet
            }

            convs.Add(command.Conv);
            if (command is AppendCommand append && _cidsLookedUp.Add((append.Origin.User, append.Cid)))
            {
                cids.Add((append.Origin.User, append.Cid, append.Conv));
            }
            else if (command is CursorCommand)
            {
                var device = new DeviceCursorKey(command.Origin.User, command.Origin.Device, command.Conv);
                if (!_deviceCursors.TryGet(KeyOf(device), out _))
                {
                    deviceKeys.Add(device);
                }

                var member = new MemberCursorKey(command.Conv, command.Origin.User);
                if (!_memberCursors.TryGet(KeyOf(member), out _))
                {
                    memberKeys.Add(member);
                }
            }
        }

        var heads = _store.GetLastSeqsAsync(convs).AsTask();
        var found = cids.Count > 0 ? _store.FindCidsAsync(cids).AsTask() : Task.FromResult(new Dictionary<(string, string), CidRecord>());
        var devices = deviceKeys.Count > 0 ? _store.GetDeviceCursorsByKeyAsync(deviceKeys).AsTask() : Task.FromResult(new Dictionary<DeviceCursorKey, long>());
        var members = memberKeys.Count > 0 ? _store.GetMemberCursorsByKeyAsync(memberKeys).AsTask() : Task.FromResult(new Dictionary<MemberCursorKey, MemberCursor>());
        try
        {
            await Task.WhenAll(heads, found, devices, members);
        }
        catch (Exception) when (heads.IsCompletedSuccessfully)
        {
            // A lookup failed (a shard down): its commands read for themselves, and fail alone.
        }

        RefreshHeads(await heads);
        if (found.IsCompletedSuccessfully)
        {
            _cidsFound = found.Result;
        }
        else
        {
            _cidsLookedUp.Clear();
        }

        if (devices.IsCompletedSuccessfully)
        {
            foreach (var key in deviceKeys)
            {
                _deviceCursors.Set(KeyOf(key), devices.Result.GetValueOrDefault(key));
            }
        }

        if (members.IsCompletedSuccessfully)
        {
            foreach (var key in memberKeys)
            {
                _memberCursors.Set(KeyOf(key), new CursorValues(members.Result.TryGetValue(key, out var cursor) ? cursor : new MemberCursor(key.User, 0, 0, 0)));
            }
        }
    }

    private void RefreshHeads(Dictionary<string, long> heads)
    {
        foreach (var (conv, stored) in heads)
        {
            var key = CacheKey.Of(conv);
            var known = _lastSeq.TryGet(key, out var cached);
            if (known && cached == stored)
            {
                continue;
            }

            _lastSeq.Set(key, stored); // 0: read, and no events yet (so the rules do not read it again)
            if (Names.IsGroup(conv))
            {
                _groups.Forget(conv);
            }
        }
    }

    /// <summary>Where the sender's event with this cid is stored: from the batch's lookup when it made one, else the store.</summary>
    private ValueTask<CidRecord?> FindCidAsync(string user, string cid, string conv) =>
        _cidsLookedUp.Contains((user, cid))
            ? ValueTask.FromResult(_cidsFound.TryGetValue((user, cid), out var hit) ? hit : (CidRecord?)null)
            : _store.FindCidAsync(user, cid, conv);

    private async ValueTask AppendAsync(AppendCommand command, long now)
    {
        var user = command.Origin.User;
        if (Pending((user, command.Cid), static (b, key) => b.Cids.TryGetValue(key, out var ack) ? ack : null) is { } earlier)
        {
            command.Ack = earlier with { Dup = true };
            return;
        }

        if (await FindCidAsync(user, command.Cid, command.Conv) is { } original)
        {
            command.Ack = new AckFrame(command.Cid, original.Conv, original.Seq, original.Id.ToString(CultureInfo.InvariantCulture), original.Ts, true);
            return;
        }

        if (command.PendingErrorCode is not null)
        {
            command.Fail(command.PendingErrorCode, command.PendingErrorMessage ?? command.PendingErrorCode);
            return;
        }

        if (await AccessAsync(command) is not { } member)
        {
            return;
        }

        if (!member.IsCurrent)
        {
            command.Fail(ErrorCodes.Forbidden, "no longer a member of this conversation");
            return;
        }

        if (command.ReplyTo is { } replyTo && (replyTo < member.FirstSeq || replyTo > member.LastSeq || await EventAsync(command.Conv, replyTo) is null))
        {
            command.Fail(ErrorCodes.NotFound, "reply_to is not an event you can see");
            return;
        }

        if (command.Target is { } target && !await CheckTargetAsync(command, member, target, now))
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
        var stored = new EventRecord
        {
            Conv = command.Conv,
            Seq = seq,
            Id = _ids.Next(),
            Ts = now,
            Sender = user,
            Dev = command.Origin.Device,
            Kind = command.Kind,
            Cid = command.Cid,
            Body = command.Body,
            E2ee = command.E2ee?.GetRawText(),
            ReplyTo = command.ReplyTo,
            Target = command.Target,
        };
        Append(stored);
        if (seq == 1 && member.Direct is [var a, var b])
        {
            // A direct conversation is listed for its two users from its first event on; nothing more is
            // written per message.
            _current.Writes.Members.Add(new MemberRecord(command.Conv, a, Roles.Member, 1, null, now));
            _current.Writes.Members.Add(new MemberRecord(command.Conv, b, Roles.Member, 1, null, now));
        }

        command.Ack = new AckFrame(command.Cid, command.Conv, seq, stored.Id.ToString(CultureInfo.InvariantCulture), now, false);
        _current.Cids[(user, command.Cid)] = command.Ack;
        command.Event = stored;
        command.Members = member.Direct ?? (await GroupAsync(command.Conv))!.Users;
    }

    /// <summary>Adds an event to the batch at the seq the caller assigned, and remembers it for later commands of the batch.</summary>
    private void Append(EventRecord stored)
    {
        _current.Writes.Events.Add(stored);
        _current.Seqs[stored.Conv] = stored.Seq;
        _current.Events[(stored.Conv, stored.Seq)] = stored;
        if (stored.Kind == EventKinds.Delete && stored.Target is { } target)
        {
            _current.Deletes.Add((stored.Conv, target));
        }
    }

    /// <summary>What the current batch, or else the newest batch in flight that knows, says about a key.</summary>
    private TValue? Pending<TKey, TValue>(TKey key, Func<BatchState, TKey, TValue?> lookup)
    {
        if (lookup(_current, key) is { } found)
        {
            return found;
        }

        for (var i = _inFlight.Count - 1; i >= 0; i--)
        {
            if (lookup(_inFlight[i], key) is { } earlier)
            {
                return earlier;
            }
        }

        return default;
    }

    private bool PendingDelete(string conv, long target)
    {
        if (_current.Deletes.Contains((conv, target)))
        {
            return true;
        }

        foreach (var state in _inFlight)
        {
            if (state.Deletes.Contains((conv, target)))
            {
                return true;
            }
        }

        return false;
    }

    private async ValueTask<bool> CheckTargetAsync(AppendCommand command, Standing member, long target, long now)
    {
        if (target < member.FirstSeq || target > member.LastSeq || await EventAsync(command.Conv, target) is not { } head)
        {
            command.Fail(ErrorCodes.NotFound, "no such target");
            return false;
        }

        if (head.Kind is not (EventKinds.Text or EventKinds.Media) || PendingDelete(command.Conv, target) || await _store.IsDeletedAsync(command.Conv, target))
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

            if (now - head.Ts > _options.EditWindowMinutes * 60_000L)
            {
                command.Fail(ErrorCodes.Forbidden, "the edit window has passed");
                return false;
            }

            return true;
        }

        if (isAuthor && now - head.Ts <= _options.DeleteWindowHours * 3_600_000L)
        {
            return true;
        }

        if (!isAuthor && member.Direct is null && member.Role == Roles.Admin)
        {
            return true;
        }

        command.Fail(ErrorCodes.Forbidden, isAuthor ? "the delete window has passed" : "only the author or a group admin may delete a message");
        return false;
    }

    private async ValueTask MoveCursorAsync(CursorCommand command, long now)
    {
        if (await AccessAsync(command) is not { } member)
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
        var deviceKey = new DeviceCursorKey(user, command.Origin.Device, command.Conv);
        if (seq > await DeviceCursorAsync(deviceKey))
        {
            _current.Writes.DeviceCursors[deviceKey] = seq;
        }

        var memberKey = new MemberCursorKey(command.Conv, user);
        var current = await MemberCursorAsync(memberKey);
        var delivered = Math.Max(current.Delivered, seq);
        var read = command.IsRead ? Math.Max(current.Read, seq) : current.Read;
        if (delivered == current.Delivered && read == current.Read)
        {
            return;
        }

        _current.Writes.MemberCursors[memberKey] = new MemberCursor(user, delivered, read, now);
        if (delivered != current.Delivered)
        {
            command.DeliveredAdvancedTo = delivered;
        }

        if (read != current.Read)
        {
            command.ReadAdvancedTo = read;
        }

        command.Members = member.Direct ?? (await GroupAsync(command.Conv))!.Users;
    }

    /// <summary>
    /// Who may see what: a direct conversation belongs to its two handles (it exists once both users do); a group
    /// to its members, current and former (a former member sees up to their removal). Refuses with
    /// <c>not_found</c> or <c>forbidden</c> on the command.
    /// </summary>
    private async ValueTask<Standing?> AccessAsync(WriteCommand command)
    {
        var conv = command.Conv;
        var user = command.Origin.User;
        if (DirectMembersOf(conv) is [var a, var b] direct)
        {
            var last = await LastSeqAsync(conv);
            if (last is null && (!await UserExistsAsync(a) || !await UserExistsAsync(b)))
            {
                command.Fail(ErrorCodes.NotFound, "no such conversation");
                return null;
            }

            if (user != a && user != b)
            {
                command.Fail(ErrorCodes.Forbidden, "not a member of this conversation");
                return null;
            }

            return new Standing(direct, Roles.Member, 1, null, last ?? 0);
        }

        if (!Names.IsValidGroupId(conv) || await GroupAsync(conv) is not { } group)
        {
            command.Fail(ErrorCodes.NotFound, "no such conversation");
            return null;
        }

        var groupLast = await LastSeqAsync(conv) ?? 0;
        if (group.Current.TryGetValue(user, out var current))
        {
            return new Standing(null, current.Role, current.JoinedSeq, null, groupLast);
        }

        if (group.Former.TryGetValue(user, out var former))
        {
            return new Standing(null, Roles.Member, former.JoinedSeq, former.RemovedSeq, groupLast);
        }

        command.Fail(ErrorCodes.Forbidden, "not a member of this conversation");
        return null;
    }

    /// <summary>The conversation's last seq as this batch sees it; null when it has never had an event.</summary>
    private async ValueTask<long?> LastSeqAsync(string conv)
    {
        if (Pending(conv, static (b, c) => b.Seqs.TryGetValue(c, out var seq) ? seq : (long?)null) is { } pending)
        {
            return pending;
        }

        if (_lastSeq.TryGet(CacheKey.Of(conv), out var cached))
        {
            return cached > 0 ? cached : null;
        }

        var stored = await _store.GetLastSeqAsync(conv);
        if (stored is { } last)
        {
            _lastSeq.Set(CacheKey.Of(conv), last);
        }

        return stored;
    }

    private async ValueTask<EventRecord?> EventAsync(string conv, long seq) =>
        Pending((conv, seq), static (b, key) => b.Events.TryGetValue(key, out var e) ? e : null) ?? await _store.GetEventAsync(conv, seq);

    private async ValueTask<long> DeviceCursorAsync(DeviceCursorKey key)
    {
        if (Pending(key, static (b, k) => b.Writes.DeviceCursors.TryGetValue(k, out var v) ? v : (long?)null) is { } pending)
        {
            return pending;
        }

        if (_deviceCursors.TryGet(KeyOf(key), out var value))
        {
            return value;
        }

        value = await _store.GetDeviceCursorAsync(key) ?? 0;
        _deviceCursors.Set(KeyOf(key), value);
        return value;
    }

    private async ValueTask<MemberCursor> MemberCursorAsync(MemberCursorKey key)
    {
        if (Pending(key, static (b, k) => b.Writes.MemberCursors.TryGetValue(k, out var v) ? v : (MemberCursor?)null) is { } pending)
        {
            return pending;
        }

        if (_memberCursors.TryGet(KeyOf(key), out var cached))
        {
            return new MemberCursor(key.User, cached.Delivered, cached.Read, cached.Updated);
        }

        var value = await _store.GetMemberCursorAsync(key) ?? new MemberCursor(key.User, 0, 0, 0);
        _memberCursors.Set(KeyOf(key), new CursorValues(value));
        return value;
    }

    private async ValueTask<bool> UserExistsAsync(string user)
    {
        if (_knownUsers.TryGet(CacheKey.Of(user), out _))
        {
            return true;
        }

        if (!Names.IsValidHandle(user) || !await _accounts.UserExistsAsync(user))
        {
            return false;
        }

        _knownUsers.Set(CacheKey.Of(user), true); // users are never deleted, so only existence is cached
        return true;
    }

    /// <summary>The sequencer's view of a group: this batch's uncommitted change if any, else the committed one.</summary>
    private async ValueTask<GroupSnapshot?> GroupAsync(string conv) =>
        Pending(conv, static (b, c) => b.Groups.TryGetValue(c, out var g) ? g : null) ?? await _groups.GetAsync(conv);

    /// <summary>The two users of a canonical direct conversation id; else null.</summary>
    private static string[]? DirectMembersOf(string conv) => Names.TryParseDirect(conv, out var a, out var b) ? [a, b] : null;

    private static CacheKey KeyOf(DeviceCursorKey key) => CacheKey.Of(key.User, key.Device, key.Conv);

    private static CacheKey KeyOf(MemberCursorKey key) => CacheKey.Of(key.Conv, key.User);

    /// <summary>A member's cursors without the user (the key has it), so the cache entry holds no reference.</summary>
    private readonly record struct CursorValues(long Delivered, long Read, long Updated)
    {
        public CursorValues(MemberCursor cursor)
            : this(cursor.Delivered, cursor.Read, cursor.Updated)
        {
        }
    }

    /// <summary>A user's standing in a conversation as the rules see it: a value, made for every command.</summary>
    /// <param name="Direct">The two users of a direct conversation; null for a group.</param>
    private readonly record struct Standing(string[]? Direct, string Role, long FirstSeq, long? RemovedSeq, long LastSeq)
    {
        public bool IsCurrent => RemovedSeq is null;

        public long LastVisible => RemovedSeq is { } removed ? Math.Min(removed, LastSeq) : LastSeq;
    }
}
