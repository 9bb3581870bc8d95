using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

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
    public GroupSnapshot(string conv, string name, Dictionary<string, GroupMember> current, Dictionary<string, FormerMember> former)
    {
        Conv = conv;
        Name = name;
        Current = current;
        Former = former;
        Users = [.. current.Keys];
    }

    public string Conv { get; }
    public string Name { get; }
    public IReadOnlyDictionary<string, GroupMember> Current { get; }
    public IReadOnlyDictionary<string, FormerMember> Former { get; }

    /// <summary>Current members, for fanout.</summary>
    public string[] Users { get; }

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

        return new GroupSnapshot(Conv, name ?? Name, current, former);
    }
}

/// <summary>
/// Group membership, cached: loaded from the store on first use, replaced by the writer after each committed
/// change. Fanout, typing and the writer's membership checks read it instead of the members table.
/// </summary>
internal sealed class GroupDirectory(SqliteDatabase database)
{
    private readonly ConcurrentDictionary<string, GroupSnapshot> _groups = new(StringComparer.Ordinal);

    /// <summary>The committed membership of a group, or null when there is no such group.</summary>
    public GroupSnapshot? Get(string conv)
    {
        if (_groups.TryGetValue(conv, out var snapshot))
        {
            return snapshot;
        }

        if (!Names.IsGroup(conv))
        {
            return null;
        }

        using var connection = database.Open();
        snapshot = Load(connection, null, conv);
        // The writer's publish wins over a concurrent load, which may have read an older state.
        return snapshot is null ? null : _groups.GetOrAdd(conv, snapshot);
    }

    public void Publish(GroupSnapshot snapshot) => _groups[snapshot.Conv] = snapshot;

    public void Forget(string conv) => _groups.TryRemove(conv, out _);

    public static GroupSnapshot? Load(SqliteConnection connection, SqliteTransaction? transaction, string conv)
    {
        string name;
        using (var group = connection.CreateCommand())
        {
            group.Transaction = transaction;
            group.CommandText = "SELECT name FROM conversations WHERE conv = $c AND kind = 'group'";
            group.Parameters.AddWithValue("$c", conv);
            if (group.ExecuteScalar() is not string found)
            {
                return null;
            }

            name = found;
        }

        var current = new Dictionary<string, GroupMember>(StringComparer.Ordinal);
        var former = new Dictionary<string, FormerMember>(StringComparer.Ordinal);
        using var members = connection.CreateCommand();
        members.Transaction = transaction;
        members.CommandText = "SELECT user, role, joined_seq, removed_seq, joined_ts FROM members WHERE conv = $c";
        members.Parameters.AddWithValue("$c", conv);
        using var reader = members.ExecuteReader();
        while (reader.Read())
        {
            var user = reader.GetString(0);
            if (reader.IsDBNull(3))
            {
                current[user] = new GroupMember(user, reader.GetString(1), reader.GetInt64(2), reader.GetInt64(4));
            }
            else
            {
                former[user] = new FormerMember(user, reader.GetInt64(2), reader.GetInt64(3));
            }
        }

        return new GroupSnapshot(conv, name, current, former);
    }
}
