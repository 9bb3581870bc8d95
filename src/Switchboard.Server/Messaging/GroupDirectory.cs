using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>A member of a group: role, and the seq of the event that (last) added them.</summary>
internal sealed record GroupMember(string User, string Role, long JoinedSeq, long JoinedTs);

/// <summary>A former member: what they may still see is <c>[JoinedSeq, RemovedSeq]</c>.</summary>
internal sealed record FormerMember(string User, long JoinedSeq, long RemovedSeq);

/// <summary>
/// An immutable view of a group's membership. The writer builds a new one for every change and publishes it
/// after commit; everyone else reads whole snapshots without locks.
/// </summary>
internal sealed class GroupSnapshot
{
    /// <summary>When this snapshot was made (Environment.TickCount64 ms): a cluster's nodes read a group again past an age.</summary>
    public long MadeAt { get; } = Environment.TickCount64;

    public GroupSnapshot(string conv, string name, long created, Dictionary<string, GroupMember> current, Dictionary<string, FormerMember> former)
    {
        Conv = conv;
        Name = name;
        Created = created;
        Current = current;
        Former = former;
        Users = [.. current.Keys];
    }

    public string Conv { get; }
    public string Name { get; }
    public long Created { get; }
    public IReadOnlyDictionary<string, GroupMember> Current { get; }
    public IReadOnlyDictionary<string, FormerMember> Former { get; }

    /// <summary>Current members, for fanout.</summary>
    public string[] Users { get; }

    public static GroupSnapshot From(GroupRecord record)
    {
        var current = new Dictionary<string, GroupMember>(StringComparer.Ordinal);
        var former = new Dictionary<string, FormerMember>(StringComparer.Ordinal);
        foreach (var m in record.Members)
        {
            if (m.RemovedSeq is { } removed)
            {
                former[m.User] = new FormerMember(m.User, m.JoinedSeq, removed);
            }
            else
            {
                current[m.User] = new GroupMember(m.User, m.Role, m.JoinedSeq, m.JoinedTs);
            }
        }

        return new GroupSnapshot(record.Conv, record.Name, record.Created, current, former);
    }

    public GroupInfo ToInfo() => new(Conv, Name, [.. Current.Values.OrderBy(m => m.JoinedSeq).ThenBy(m => m.User, StringComparer.Ordinal).Select(m => new GroupMemberInfo(m.User, m.Role))]);

    /// <summary>A changed copy; the writer's only way to change membership.</summary>
    public GroupSnapshot With(string? name = null, IEnumerable<GroupMember>? set = null, IEnumerable<FormerMember>? remove = null)
    {
        var current = new Dictionary<string, GroupMember>(Current, StringComparer.Ordinal);
        var former = new Dictionary<string, FormerMember>(Former, StringComparer.Ordinal);
        foreach (var member in set ?? [])
        {
            current[member.User] = member;
            former.Remove(member.User);
        }

        foreach (var gone in remove ?? [])
        {
            current.Remove(gone.User);
            former[gone.User] = gone;
        }

        return new GroupSnapshot(Conv, name ?? Name, Created, current, former);
    }
}

/// <summary>
/// Group membership, cached: loaded from the store on first use, replaced by the sequencer after each committed
/// change. Fanout, typing and the sequencer's membership checks read it instead of the store. Bounded
/// (<see cref="MessagingOptions.GroupCacheEntries"/>): an evicted group is loaded again from the store, which is the
/// truth.
/// </summary>
internal sealed class GroupDirectory(IMessageStore store, Microsoft.Extensions.Options.IOptions<MessagingOptions> options)
{
    private readonly ConcurrentBoundedCache<string, GroupSnapshot> _groups = new(options.Value.GroupCacheEntries, StringComparer.Ordinal);
    private long _publishes;

    public int Count => _groups.Count;

    /// <summary>
    /// Cluster mode: a cached group is read again once this old (ms), so a change whose broadcast was lost (NATS away
    /// at that moment) is seen within this long by every reader; 0 (one process): never, it sees every change.
    /// </summary>
    public long MaxAgeMs { get; set; }

    /// <summary>The committed membership of a group, or null when there is no such group.</summary>
    public async ValueTask<GroupSnapshot?> GetAsync(string conv, CancellationToken cancellationToken = default)
    {
        if (_groups.TryGet(conv, out var snapshot))
        {
            if (MaxAgeMs == 0 || Environment.TickCount64 - snapshot.MadeAt <= MaxAgeMs)
            {
                return snapshot;
            }

            _groups.Remove(conv); // too old: read again below
        }

        if (!Names.IsGroup(conv))
        {
            return null;
        }

        while (true)
        {
            // A load that overlaps a publish may have read the state before it: load again rather than cache it.
            var publishes = Interlocked.Read(ref _publishes);
            var record = await store.GetGroupAsync(conv, cancellationToken);
            if (record is null)
            {
                return null;
            }

            snapshot = GroupSnapshot.From(record);
            if (Interlocked.Read(ref _publishes) == publishes)
            {
                _groups.TryAdd(conv, snapshot);
                return _groups.TryGet(conv, out var cached) ? cached : snapshot;
            }
        }
    }

    /// <summary>Drops a cached group (its state is uncertain); the next reader loads it from the store.</summary>
    public void Forget(string conv)
    {
        _groups.Remove(conv);
        Interlocked.Increment(ref _publishes);
    }

    public void Publish(GroupSnapshot snapshot)
    {
        _groups.Set(snapshot.Conv, snapshot);
        Interlocked.Increment(ref _publishes);
        Changed?.Invoke(snapshot.Conv);
    }

    /// <summary>A group's membership or name changed here and is committed (a cluster tells the other nodes).</summary>
    public event Action<string>? Changed;
}
