using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Hosting;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Tests;

/// <summary>
/// The promises of the storage port, stated once. A store passes when every test here passes on it: the embedded
/// store subclasses this in <see cref="RocksStoreContractTests"/>; a distributed store subclasses it the same way.
/// The first part states what the port itself keeps (records back as written, in order, durable across a restart
/// and a crash, found by cid, purged by age without losing the last seq); the second runs the real rules and
/// sequencer on top of the store and states the promises users see (gap-free seqs in submission order, one event
/// per cid across restarts, cursors that never move back, membership ranges).
/// </summary>
public abstract class MessageStoreContract : IAsyncLifetime
{
    private StoreUnderTest? _current;

    /// <summary>An open store on <paramref name="place"/> (a directory, a database name…), made empty when new.</summary>
    private protected abstract Task<StoreUnderTest> OpenAsync(string place);

    /// <summary>What a crash of the process (kill -9) leaves of the store, opened.</summary>
    private protected abstract Task<StoreUnderTest> CrashAndReopenAsync(StoreUnderTest store);

    private protected abstract string NewPlace();

    private protected StoreUnderTest Current => _current!;

    public async Task InitializeAsync() => _current = await OpenAsync(NewPlace());

    public virtual async Task DisposeAsync()
    {
        if (_current is not null)
        {
            await _current.DisposeAsync();
        }
    }

    private protected async Task RestartAsync()
    {
        var place = Current.Place;
        await Current.DisposeAsync();
        _current = await OpenAsync(place);
    }

    private protected async Task CrashAsync() => _current = await CrashAndReopenAsync(Current);

    private static long _ids = 1_000;

    private static EventRecord Event(string conv, long seq, string sender = "alice", string? cid = null, long ts = 1_000, string kind = EventKinds.Text, long? target = null) => new()
    {
        Conv = conv,
        Seq = seq,
        Id = Interlocked.Increment(ref _ids),
        Ts = ts,
        Sender = sender,
        Dev = 1,
        Kind = kind,
        Cid = cid ?? Guid.NewGuid().ToString(),
        Body = kind is EventKinds.Text or EventKinds.Edit ? $"body {seq}" : null,
        Target = target,
    };

    private static string NewConv() => Names.DirectConversation(TestServer.NewUser("a"), TestServer.NewUser("b"));

    private async Task CommitAsync(Action<StoreBatch> fill)
    {
        var batch = new StoreBatch();
        fill(batch);
        await Current.Store.CommitAsync(batch, CancellationToken.None);
    }

    // ---- The port ----

    [Fact]
    public async Task Events_come_back_whole_and_in_seq_order_by_range()
    {
        var conv = NewConv();
        await CommitAsync(b => b.Events.AddRange(Enumerable.Range(1, 30).Select(i => Event(conv, i, ts: 1_000 + i))));
        var e2ee = Event(conv, 31, ts: 2_000) is var x ? new EventRecord
        {
            Conv = x.Conv, Seq = x.Seq, Id = x.Id, Ts = x.Ts, Sender = "bob", Dev = 7, Kind = EventKinds.Media, Cid = "c-31",
            E2ee = "{\"ct\":\"AAEC\",\"keys\":[1,2]}", ReplyTo = 3,
        } : null!;
        await CommitAsync(b => b.Events.Add(e2ee));

        var after = await Current.Store.ReadAfterAsync(conv, 10, 25, 100);
        Assert.Equal(Enumerable.Range(11, 15).Select(i => (long)i), after.Select(e => e.Seq));
        Assert.Equal("body 11", after[0].Body);
        Assert.Equal(5, (await Current.Store.ReadAfterAsync(conv, 0, long.MaxValue, 5)).Count);

        var before = await Current.Store.ReadBeforeAsync(conv, 20, 1, 0, 4);
        Assert.Equal([19L, 18, 17, 16], before.Select(e => e.Seq));
        Assert.Equal([30L, 29], (await Current.Store.ReadBeforeAsync(conv, 31, 29, 0, 10)).Select(e => e.Seq)); // minSeq
        Assert.Equal([30L, 29, 28], (await Current.Store.ReadBeforeAsync(conv, 31, 1, 1_028, 10)).Select(e => e.Seq)); // minTs

        var stored = Assert.Single(await Current.Store.ReadAfterAsync(conv, 30, 31, 10));
        Assert.Equal(("bob", 7, EventKinds.Media, "c-31", 3L, (string?)null), (stored.Sender, stored.Dev, stored.Kind, stored.Cid, stored.ReplyTo!.Value, stored.Body));
        Assert.Equal(e2ee.E2ee, stored.E2ee);
        Assert.Equal(e2ee.Id, stored.Id);
        Assert.Equal("c-31", (await Current.Store.GetEventAsync(conv, 31))!.Cid);
        Assert.Null(await Current.Store.GetEventAsync(conv, 32));
        Assert.Empty(await Current.Store.ReadAfterAsync(NewConv(), 0, long.MaxValue, 10));
    }

    [Fact]
    public async Task The_last_seq_is_the_highest_committed_and_none_for_a_conversation_without_events()
    {
        var conv = NewConv();
        Assert.Null(await Current.Store.GetLastSeqAsync(conv));
        await CommitAsync(b => b.Events.AddRange([Event(conv, 1), Event(conv, 2), Event(conv, 3)]));
        Assert.Equal(3, await Current.Store.GetLastSeqAsync(conv));
        await CommitAsync(b => b.Events.Add(Event(conv, 4)));
        Assert.Equal(4, await Current.Store.GetLastSeqAsync(conv));
    }

    [Fact]
    public async Task A_cid_is_found_where_it_was_stored_across_a_restart_and_a_crash()
    {
        var conv = NewConv();
        var first = Event(conv, 1, sender: "alice", cid: "same-cid");
        await CommitAsync(b => b.Events.Add(first));
        await RestartAsync();
        var hit = await Current.Store.FindCidAsync("alice", "same-cid");
        Assert.Equal(new CidRecord(conv, 1, first.Id, first.Ts), hit);
        Assert.Null(await Current.Store.FindCidAsync("bob", "same-cid")); // per sender
        Assert.Null(await Current.Store.FindCidAsync("alice", "other-cid"));

        await CommitAsync(b => b.Events.Add(Event(conv, 2, sender: "alice", cid: "after-restart")));
        await CrashAsync();
        Assert.Equal(2, (await Current.Store.FindCidAsync("alice", "after-restart"))?.Seq);
        Assert.Equal(2, await Current.Store.GetLastSeqAsync(conv));
    }

    [Fact]
    public async Task Every_committed_batch_survives_a_crash_whole()
    {
        var conv = NewConv();
        var group = "grp:" + Interlocked.Increment(ref _ids);
        for (var i = 1; i <= 50; i++)
        {
            var seq = i;
            await CommitAsync(b =>
            {
                b.Events.Add(Event(conv, seq));
                b.DeviceCursors[new DeviceCursorKey("bob", 1, conv)] = seq;
                b.MemberCursors[new MemberCursorKey(conv, "bob")] = new MemberCursor("bob", seq, seq - 1, seq);
            });
        }

        await CommitAsync(b =>
        {
            b.Groups.Add((group, "the group", 5));
            b.Members.Add(new MemberRecord(group, "alice", Roles.Admin, 1, null, 5));
            b.Members.Add(new MemberRecord(group, "bob", Roles.Member, 1, 3, 5));
            b.Events.Add(Event(group, 1, kind: EventKinds.System));
        });

        await CrashAsync();
        Assert.Equal(50, await Current.Store.GetLastSeqAsync(conv));
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), (await Current.Store.ReadAfterAsync(conv, 0, long.MaxValue, 100)).Select(e => e.Seq));
        Assert.Equal(50, await Current.Store.GetDeviceCursorAsync(new DeviceCursorKey("bob", 1, conv)));
        Assert.Equal(new MemberCursor("bob", 50, 49, 50), await Current.Store.GetMemberCursorAsync(new MemberCursorKey(conv, "bob")));
        var stored = await Current.Store.GetGroupAsync(group);
        Assert.NotNull(stored);
        Assert.Equal("the group", stored.Name);
        Assert.Equal(2, stored.Members.Count);
        Assert.Equal(3, stored.Members.Single(m => m.User == "bob").RemovedSeq);
    }

    [Fact]
    public async Task A_batch_of_cursor_moves_alone_survives_a_crash_of_the_process()
    {
        // Such a batch needs no fsync of its own (StoreBatch.MustSync), but what was written is the process's no
        // longer: a kill -9 right after the commit keeps it.
        var conv = NewConv();
        await CommitAsync(b => b.Events.AddRange([Event(conv, 1), Event(conv, 2)]));
        var cursorsOnly = new StoreBatch();
        cursorsOnly.DeviceCursors[new DeviceCursorKey("bob", 1, conv)] = 2;
        cursorsOnly.MemberCursors[new MemberCursorKey(conv, "bob")] = new MemberCursor("bob", 2, 1, 7);
        Assert.False(cursorsOnly.MustSync);
        await Current.Store.CommitAsync(cursorsOnly, CancellationToken.None);

        await CrashAsync();
        Assert.Equal(2, await Current.Store.GetDeviceCursorAsync(new DeviceCursorKey("bob", 1, conv)));
        Assert.Equal(new MemberCursor("bob", 2, 1, 7), await Current.Store.GetMemberCursorAsync(new MemberCursorKey(conv, "bob")));
        Assert.Equal(2, await Current.Store.GetLastSeqAsync(conv));
    }

    [Fact]
    public async Task Cursors_are_kept_per_device_and_per_member_and_the_last_value_written_wins()
    {
        var conv = NewConv();
        var other = NewConv();
        await CommitAsync(b =>
        {
            b.DeviceCursors[new DeviceCursorKey("carol", 1, conv)] = 5;
            b.DeviceCursors[new DeviceCursorKey("carol", 1, other)] = 9;
            b.DeviceCursors[new DeviceCursorKey("carol", 2, conv)] = 2;
            b.MemberCursors[new MemberCursorKey(conv, "carol")] = new MemberCursor("carol", 5, 4, 100);
            b.MemberCursors[new MemberCursorKey(conv, "dave")] = new MemberCursor("dave", 3, 3, 101);
        });
        await CommitAsync(b => b.DeviceCursors[new DeviceCursorKey("carol", 1, conv)] = 7);

        var device1 = await Current.Store.GetDeviceCursorsAsync("carol", 1);
        Assert.Equal(2, device1.Count);
        Assert.Equal(7, device1[conv]);
        Assert.Equal(9, device1[other]);
        Assert.Equal(2, (await Current.Store.GetDeviceCursorsAsync("carol", 2))[conv]);
        Assert.Empty(await Current.Store.GetDeviceCursorsAsync("carol", 3));
        var members = await Current.Store.GetMemberCursorsAsync(conv);
        Assert.Equal(["carol", "dave"], members.Select(m => m.User).Order());
        Assert.Null(await Current.Store.GetMemberCursorAsync(new MemberCursorKey(other, "carol")));
    }

    [Fact]
    public async Task A_users_memberships_carry_their_range_and_the_last_seq()
    {
        var user = TestServer.NewUser("m");
        var direct = Names.DirectConversation(user, TestServer.NewUser("n"));
        var group = "grp:" + Interlocked.Increment(ref _ids);
        await CommitAsync(b =>
        {
            b.Events.AddRange([Event(direct, 1), Event(direct, 2)]);
            b.Members.Add(new MemberRecord(direct, user, Roles.Member, 1, null, 1));
            b.Groups.Add((group, "g", 1));
            b.Events.AddRange([Event(group, 1), Event(group, 2), Event(group, 3), Event(group, 4)]);
            b.Members.Add(new MemberRecord(group, user, Roles.Member, 2, 4, 1));
        });

        var memberships = (await Current.Store.GetMembershipsAsync(user)).ToDictionary(m => m.Conv);
        Assert.Equal(new Membership(direct, "direct", Roles.Member, 1, null, 2), memberships[direct]);
        Assert.Equal(new Membership(group, "group", Roles.Member, 2, 4, 4), memberships[group]);
        Assert.Equal(4, memberships[group].LastVisible);
    }

    [Fact]
    public async Task Deletes_are_known_and_own_messages_and_unread_counts_are_found_by_range()
    {
        var conv = NewConv();
        await CommitAsync(b => b.Events.AddRange(
        [
            Event(conv, 1, sender: "alice"), Event(conv, 2, sender: "bob"), Event(conv, 3, sender: "bob", kind: EventKinds.System),
            Event(conv, 4, sender: "alice"), Event(conv, 5, sender: "bob", kind: EventKinds.Delete, target: 2), Event(conv, 6, sender: "bob"),
        ]));
        Assert.True(await Current.Store.IsDeletedAsync(conv, 2));
        Assert.False(await Current.Store.IsDeletedAsync(conv, 1));
        Assert.Equal(4, await Current.Store.NextOwnMessageAsync(conv, "alice", 1));
        Assert.Null(await Current.Store.NextOwnMessageAsync(conv, "alice", 4));
        Assert.Equal(2, await Current.Store.CountUnreadAsync(conv, "alice", 0, 6)); // bob's text 2 and 6
        Assert.Equal(1, await Current.Store.CountUnreadAsync(conv, "alice", 2, 6));
    }

    [Fact]
    public async Task The_purge_deletes_only_what_is_older_and_keeps_the_last_seq()
    {
        const long Day = 86_400_000;
        var old = NewConv();
        var mixed = NewConv();
        await CommitAsync(b => b.Events.AddRange([Event(old, 1, cid: "old-1", ts: 10 * Day), Event(old, 2, cid: "old-2", ts: 10 * Day), Event(mixed, 1, cid: "mixed-1", ts: 10 * Day)]));
        await CommitAsync(b => b.Events.Add(Event(mixed, 2, cid: "mixed-2", ts: 45 * Day)));

        Assert.Equal(3, await Current.Store.PurgeAsync(40 * Day, 1_000));
        Assert.Empty(await Current.Store.ReadAfterAsync(old, 0, long.MaxValue, 10));
        Assert.Equal([2L], (await Current.Store.ReadAfterAsync(mixed, 0, long.MaxValue, 10)).Select(e => e.Seq));
        Assert.Null(await Current.Store.FindCidAsync("alice", "old-1"));
        Assert.NotNull(await Current.Store.FindCidAsync("alice", "mixed-2"));
        Assert.Equal(2, await Current.Store.GetLastSeqAsync(old)); // a purge never lets a seq be reused
        await RestartAsync();
        Assert.Equal(2, await Current.Store.GetLastSeqAsync(old));
        Assert.Equal(0, await Current.Store.PurgeAsync(40 * Day, 1_000));
    }

    [Fact]
    public async Task Accounts_keep_users_devices_and_tokens()
    {
        var accounts = Current.Accounts;
        var user = TestServer.NewUser("acc");
        Assert.True(await accounts.CreateUserAsync(new UserRecord(user, [1, 2, 3], [4, 5], "argon2id;m=64;t=1", 10)));
        Assert.False(await accounts.CreateUserAsync(new UserRecord(user, [9], [9], "x", 11))); // taken
        Assert.Equal([1, 2, 3], (await accounts.GetUserAsync(user))!.Hash);
        var hash = new byte[32];
        Random.Shared.NextBytes(hash);
        Assert.True(await accounts.AddDeviceAsync(new DeviceRecord(user, 1, "phone", hash, 20, false), new Dictionary<string, long> { ["dm:x:y"] = 4 }));
        Assert.False(await accounts.AddDeviceAsync(new DeviceRecord(user, 1, "again", null, 21, false), new Dictionary<string, long>()));
        Assert.Equal(new DeviceIdentity(user, 1, 20), await accounts.FindByTokenAsync(hash));
        Assert.Equal(4, (await Current.Store.GetDeviceCursorsAsync(user, 1))["dm:x:y"]);
        await accounts.TouchDeviceAsync(user, 1, 30);
        await accounts.SetLastSeenAsync(user, 40);
        await RestartAsync();
        Assert.Equal(30, (await Current.Accounts.FindByTokenAsync(hash))!.LastActive);
        Assert.Equal(40, await Current.Accounts.GetLastSeenAsync(user));
        Assert.True(await Current.Accounts.RevokeDeviceAsync(user, 1));
        Assert.False(await Current.Accounts.RevokeDeviceAsync(user, 1));
        Assert.Null(await Current.Accounts.FindByTokenAsync(hash));
        Assert.True(Assert.Single(await Current.Accounts.GetDevicesAsync(user)).Revoked);
    }

    // ---- The rules and the sequencer on top of the store: the promises users see ----

    [Fact]
    public async Task Seqs_are_gap_free_and_in_submission_order_per_conversation_across_a_crash()
    {
        var (alice, bob) = await UsersAsync();
        var conv = Names.DirectConversation(alice, bob);
        await using (var path = Current.Path())
        {
            var acks = await path.SendAllAsync(alice, conv, Enumerable.Range(0, 300).Select(i => $"m{i}").ToList());
            Assert.Equal(Enumerable.Range(1, 300).Select(i => (long)i), acks.Select(a => a.Seq));
        }

        await CrashAsync();
        await using (var path = Current.Path())
        {
            var acks = await path.SendAllAsync(bob, conv, ["after the crash"]);
            Assert.Equal(301, acks[0].Seq);
        }

        var stored = await Current.Store.ReadAfterAsync(conv, 0, long.MaxValue, 1_000);
        Assert.Equal(Enumerable.Range(1, 301).Select(i => (long)i), stored.Select(e => e.Seq));
        Assert.Equal(Enumerable.Range(0, 300).Select(i => $"m{i}"), stored.Take(300).Select(e => e.Cid));
    }

    [Fact]
    public async Task A_resend_with_the_same_cid_gets_the_original_ack_within_a_batch_and_after_a_restart()
    {
        var (alice, bob) = await UsersAsync();
        var conv = Names.DirectConversation(alice, bob);
        List<AckFrame> first;
        await using (var path = Current.Path())
        {
            first = await path.SendAllAsync(alice, conv, ["x", "x", "y"]); // a repeat inside one batch
        }

        Assert.False(first[0].Dup);
        Assert.True(first[1].Dup);
        Assert.Equal(first[0].Seq, first[1].Seq);
        await RestartAsync();
        await using (var path = Current.Path())
        {
            var again = await path.SendAllAsync(alice, conv, ["x", "y", "z"]);
            Assert.True(again[0].Dup && again[1].Dup);
            Assert.Equal((first[0].Seq, first[0].Id), (again[0].Seq, again[0].Id));
            Assert.Equal(3, again[2].Seq);
        }

        Assert.Equal(3, (await Current.Store.ReadAfterAsync(conv, 0, long.MaxValue, 10)).Count);
    }

    [Fact]
    public async Task Cursors_never_move_back_and_never_pass_what_the_member_may_see()
    {
        var (alice, bob) = await UsersAsync();
        var conv = Names.DirectConversation(alice, bob);
        await using var path = Current.Path();
        await path.SendAllAsync(alice, conv, ["1", "2", "3", "4", "5"]);
        await path.CursorAsync(bob, conv, 4, read: false);
        await path.CursorAsync(bob, conv, 2, read: true); // an older recv after a newer one
        await path.CursorAsync(bob, conv, 99, read: false); // beyond the end: clamped
        var cursor = await Current.Store.GetMemberCursorAsync(new MemberCursorKey(conv, bob));
        Assert.Equal((5L, 2L), (cursor!.Value.Delivered, cursor.Value.Read));
        Assert.Equal(5, (await Current.Store.GetDeviceCursorsAsync(bob, 1))[conv]);
    }

    [Fact]
    public async Task A_removed_member_can_no_longer_send_and_keeps_only_the_range_they_were_in()
    {
        var (alice, bob) = await UsersAsync();
        await using var path = Current.Path();
        var create = await path.RunAsync(new GroupCommand { Origin = new HttpOrigin(alice, 1), Conv = "", Op = GroupOp.Create, Name = "team", Users = [bob], MaxMembers = 10, Completion = MessagePath.Done() });
        var group = create.CreatedConv!;
        await path.SendAllAsync(bob, group, ["hello"]);
        var removed = await path.RunAsync(new GroupCommand { Origin = new HttpOrigin(alice, 1), Conv = group, Op = GroupOp.Remove, Users = [bob], Completion = MessagePath.Done() });
        Assert.Null(removed.ErrorCode);
        var refused = await path.RunAsync(new AppendCommand { Origin = new HttpOrigin(bob, 1), Conv = group, Cid = "late", Kind = EventKinds.Text, Body = "still here?", Completion = MessagePath.Done() });
        Assert.Equal(ErrorCodes.Forbidden, refused.ErrorCode);
        await path.SendAllAsync(alice, group, ["after bob"]);
        var bobs = (await Current.Store.GetMembershipsAsync(bob)).Single(m => m.Conv == group);
        Assert.Equal((1L, 3L, 4L), (bobs.FirstSeq, bobs.RemovedSeq!.Value, bobs.LastSeq));
        Assert.Equal(3, bobs.LastVisible);
    }

    private async Task<(string Alice, string Bob)> UsersAsync()
    {
        var alice = TestServer.NewUser("sa");
        var bob = TestServer.NewUser("sb");
        Assert.True(await Current.Accounts.CreateUserAsync(new UserRecord(alice, [1], [1], "p", 1)));
        Assert.True(await Current.Accounts.CreateUserAsync(new UserRecord(bob, [1], [1], "p", 1)));
        return (alice, bob);
    }
}

/// <summary>A store opened for the contract, with what closes it.</summary>
internal sealed class StoreUnderTest(string place, IMessageStore store, IAccountStore accounts, Func<ValueTask> close) : IAsyncDisposable
{
    private bool _closed;

    public string Place { get; } = place;
    public IMessageStore Store { get; } = store;
    public IAccountStore Accounts { get; } = accounts;

    /// <summary>The real rules and sequencer over this store, without sockets.</summary>
    public MessagePath Path(bool sharedWriters = false) => new(Store, Accounts, sharedWriters);

    public async ValueTask DisposeAsync()
    {
        if (!_closed)
        {
            _closed = true;
            await close();
        }
    }
}

/// <summary>The sequencer and rules of the server over a store, with an observer that completes each command.</summary>
internal sealed class MessagePath : ICommitObserver, IAsyncDisposable
{
    private readonly Sequencer _sequencer;

    public MessagePath(IMessageStore store, IAccountStore accounts, bool sharedWriters = false)
    {
        var messaging = Options.Create(new MessagingOptions());
        var groups = new GroupDirectory(store, messaging);
        var rules = new MessageRules(store, accounts, groups, messaging, new IdGenerator());
        _sequencer = new Sequencer(store, rules, groups, Options.Create(new StorageOptions { SharedWriters = sharedWriters }), TimeProvider.System, new SwitchboardMetrics(), NullLogger<Sequencer>.Instance);
        _sequencer.Start(this);
    }

    public static TaskCompletionSource Done() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void OnCommitted(IReadOnlyList<WriteCommand> batch)
    {
        foreach (var command in batch)
        {
            command.Completion!.TrySetResult();
        }
    }

    public async Task<T> RunAsync<T>(T command)
        where T : WriteCommand
    {
        await _sequencer.SubmitAsync(command, CancellationToken.None);
        await command.Completion!.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return command;
    }

    /// <summary>Sends every cid at once (so they share batches), in order; returns their acks in the same order.</summary>
    public async Task<List<AckFrame>> SendAllAsync(string user, string conv, List<string> cids)
    {
        var commands = cids.Select(cid => new AppendCommand
        {
            Origin = new HttpOrigin(user, 1),
            Conv = conv,
            Cid = cid,
            Kind = EventKinds.Text,
            Body = "body of " + cid,
            Completion = Done(),
        }).ToList();
        foreach (var command in commands)
        {
            await _sequencer.SubmitAsync(command, CancellationToken.None);
        }

        await Task.WhenAll(commands.Select(c => c.Completion!.Task)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(commands, c => Assert.Null(c.ErrorCode));
        return [.. commands.Select(c => c.Ack!)];
    }

    public async Task CursorAsync(string user, string conv, long seq, bool read)
    {
        var command = await RunAsync(new CursorCommand
        {
            Origin = new HttpOrigin(user, 1),
            Conv = conv,
            Seq = seq,
            IsRead = read,
            Completion = Done(),
        });
        Assert.Null(command.ErrorCode);
    }

    public ValueTask DisposeAsync()
    {
        _sequencer.Dispose();
        return ValueTask.CompletedTask;
    }
}
