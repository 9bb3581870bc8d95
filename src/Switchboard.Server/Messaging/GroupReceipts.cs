using Switchboard.Protocol;
using Switchboard.Server.Delivery;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>
/// The double and blue ticks of a group without a storm. Per group it keeps every current member's delivered and
/// read cursor in an ordered set, so the minimum over the members other than an author is the first or second
/// entry: O(log n) per cursor move, never a pass over the members. An author is sent one aggregated receipt
/// (<c>user: "*"</c>) when that minimum passes one of their text or media events. Runs on the sequencer's thread
/// only, after commit (and in a cluster from the bus, hence one lock). Bounded (<see cref="MessagingOptions.GroupReceiptCacheEntries"/>
/// groups): an evicted group is loaded again from the store's cursors and events, which are the truth.
/// </summary>
internal sealed class GroupReceipts(IMessageStore store, GroupDirectory groups, IDeliveryHub delivery, Microsoft.Extensions.Options.IOptions<MessagingOptions> options)
{
    private readonly BoundedCache<string, Aggregate> _aggregates = new(options.Value.GroupReceiptCacheEntries, StringComparer.Ordinal);

    // The sequencer's publishing thread is the only caller in one process; in a cluster, cursor moves committed by
    // other nodes arrive from the bus too, so every entry point takes this lock.
    private readonly Lock _gate = new();

    public int Count => _aggregates.Count;

    /// <summary>Told of every cursor move committed here (cluster mode: passed on to the other nodes' aggregates).</summary>
    public Action<string, string, long?, long?>? Relay { get; set; }

    /// <summary>Drops a group's aggregate; the next use loads it from the store (its membership changed elsewhere).</summary>
    public void Forget(string conv)
    {
        lock (_gate)
        {
            _aggregates.Remove(conv);
        }
    }

    /// <summary>A new event in a group: a text or media one is pending for its author until the members pass it.</summary>
    public void Appended(EventRecord stored)
    {
        lock (_gate)
        {
            AppendedLocked(stored);
        }
    }

    private void AppendedLocked(EventRecord stored)
    {
        if (stored.Kind is not (EventKinds.Text or EventKinds.Media) || Load(stored.Conv) is not { } aggregate)
        {
            return;
        }

        aggregate.Delivered.Pending.TryAdd(stored.Sender, stored.Seq);
        aggregate.Read.Pending.TryAdd(stored.Sender, stored.Seq);
    }

    /// <summary>
    /// A member's cursor moved (values are the member's new cursors, or null when unchanged); committed here, or by
    /// another node (<paramref name="fromPeer"/>). Any node holding the aggregate may then tell an author; a
    /// receipt is a cumulative cursor, so one told twice is told nothing new.
    /// </summary>
    public void CursorMoved(string conv, string user, long? delivered, long? read, bool fromPeer = false)
    {
        if (!fromPeer)
        {
            Relay?.Invoke(conv, user, delivered, read);
        }

        lock (_gate)
        {
            CursorMovedLocked(conv, user, delivered, read);
        }
    }

    private void CursorMovedLocked(string conv, string user, long? delivered, long? read)
    {
        if (Load(conv) is not { } aggregate || !aggregate.Members.Contains(user))
        {
            return;
        }

        if (delivered is { } d)
        {
            Update(aggregate, aggregate.Delivered, ReceiptKinds.Delivered, t => t.Set(user, d));
        }

        if (read is { } r)
        {
            Update(aggregate, aggregate.Read, ReceiptKinds.Read, t => t.Set(user, r));
        }
    }

    /// <summary>Membership changed: leavers no longer hold the minimum back; newcomers count from their join.</summary>
    public void MembershipChanged(GroupSnapshot group, IReadOnlyList<string> departed)
    {
        lock (_gate)
        {
            MembershipChangedLocked(group, departed);
        }
    }

    private void MembershipChangedLocked(GroupSnapshot group, IReadOnlyList<string> departed)
    {
        if (!_aggregates.TryGet(group.Conv, out var aggregate))
        {
            return;
        }

        foreach (var (user, member) in group.Current)
        {
            if (aggregate.Members.Add(user))
            {
                aggregate.Delivered.Set(user, member.JoinedSeq - 1);
                aggregate.Read.Set(user, member.JoinedSeq - 1);
            }
        }

        foreach (var user in departed)
        {
            aggregate.Members.Remove(user);
            aggregate.Delivered.Pending.Remove(user);
            aggregate.Read.Pending.Remove(user);
            Update(aggregate, aggregate.Delivered, ReceiptKinds.Delivered, t => t.Remove(user));
            Update(aggregate, aggregate.Read, ReceiptKinds.Read, t => t.Remove(user));
        }
    }

    private void Update(Aggregate aggregate, Track track, string kind, Action<Track> change)
    {
        var before = track.Head();
        change(track);
        if (track.Head() == before)
        {
            return; // neither of the two lowest cursors moved: no author's minimum changed
        }

        foreach (var (author, pending) in track.Pending.ToArray())
        {
            var min = track.MinExcluding(author);
            if (min == long.MaxValue || min < pending)
            {
                continue;
            }

            var sent = delivery.SendToUserAsync(author, Frames.Serialize(new ReceiptFrame(aggregate.Conv, "*", kind, min)));
            if (!sent.IsCompletedSuccessfully)
            {
                _ = sent.AsTask(); // a distributed hub's send is not waited for on this thread
            }

            if (Wait(store.NextOwnMessageAsync(aggregate.Conv, author, min)) is { } next)
            {
                track.Pending[author] = next;
            }
            else
            {
                track.Pending.Remove(author);
            }
        }
    }

    private Aggregate? Load(string conv)
    {
        if (_aggregates.TryGet(conv, out var aggregate))
        {
            return aggregate;
        }

        if (Wait(groups.GetAsync(conv)) is not { } group)
        {
            return null;
        }

        aggregate = new Aggregate(conv);
        var cursors = Wait(store.GetMemberCursorsAsync(conv)).ToDictionary(c => c.User, StringComparer.Ordinal);
        foreach (var (user, member) in group.Current)
        {
            aggregate.Members.Add(user);
            var cursor = cursors.GetValueOrDefault(user);
            aggregate.Delivered.Set(user, Math.Max(cursor.Delivered, member.JoinedSeq - 1));
            aggregate.Read.Set(user, Math.Max(cursor.Read, member.JoinedSeq - 1));
        }

        foreach (var author in group.Current.Keys)
        {
            foreach (var track in new[] { aggregate.Delivered, aggregate.Read })
            {
                var min = track.MinExcluding(author);
                if (min != long.MaxValue && Wait(store.NextOwnMessageAsync(conv, author, min)) is { } next)
                {
                    track.Pending[author] = next;
                }
            }
        }

        _aggregates.Set(conv, aggregate);
        return aggregate;
    }

    /// <summary>The embedded store answers at once; another is waited for on this thread.</summary>
    private static T Wait<T>(ValueTask<T> pending) => pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();

    private sealed class Aggregate(string conv)
    {
        public string Conv { get; } = conv;
        public HashSet<string> Members { get; } = new(StringComparer.Ordinal);
        public Track Delivered { get; } = new();
        public Track Read { get; } = new();
    }

    /// <summary>One kind of cursor for every member, ordered by value.</summary>
    private sealed class Track
    {
        private readonly Dictionary<string, long> _values = new(StringComparer.Ordinal);
        private readonly SortedSet<(long Value, string User)> _order = new(Comparer<(long Value, string User)>.Create(
            static (a, b) => a.Value != b.Value ? a.Value.CompareTo(b.Value) : string.CompareOrdinal(a.User, b.User)));

        /// <summary>Per author, their first text or media event not yet passed by the others' minimum.</summary>
        public Dictionary<string, long> Pending { get; } = new(StringComparer.Ordinal);

        public void Set(string user, long value)
        {
            if (_values.TryGetValue(user, out var old))
            {
                if (value <= old)
                {
                    return; // cursors never move back
                }

                _order.Remove((old, user));
            }

            _values[user] = value;
            _order.Add((value, user));
        }

        public void Remove(string user)
        {
            if (_values.Remove(user, out var old))
            {
                _order.Remove((old, user));
            }
        }

        /// <summary>The two lowest entries; any change in them may change some author's minimum.</summary>
        public ((long, string)?, long) Head()
        {
            using var e = _order.GetEnumerator();
            if (!e.MoveNext())
            {
                return (null, long.MaxValue);
            }

            var first = e.Current;
            return (first, e.MoveNext() ? e.Current.Value : long.MaxValue);
        }

        /// <summary>The lowest cursor among members other than <paramref name="author"/>; MaxValue when there are none.</summary>
        public long MinExcluding(string author)
        {
            foreach (var (value, user) in _order)
            {
                if (user != author)
                {
                    return value;
                }
            }

            return long.MaxValue;
        }
    }
}
