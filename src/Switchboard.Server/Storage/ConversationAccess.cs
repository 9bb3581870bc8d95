using Microsoft.Data.Sqlite;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>Outcome of looking up a user's access to a conversation.</summary>
internal readonly record struct AccessResult(Membership? Membership, string? ErrorCode, string? ErrorMessage)
{
    public static AccessResult NotFound(string message) => new(null, ErrorCodes.NotFound, message);
    public static AccessResult Forbidden(string message) => new(null, ErrorCodes.Forbidden, message);
}

/// <summary>
/// Who may see what: a direct conversation belongs to its two handles (it exists as soon as both users do); a
/// group to the rows of <c>members</c>. Used by the writer and by every read, so both apply the same rule.
/// </summary>
internal static class ConversationAccess
{
    public static AccessResult Resolve(SqliteConnection connection, SqliteTransaction? transaction, string conv, string user, long? lastSeqOverride = null)
    {
        if (Names.TryParseDirect(conv, out var a, out var b))
        {
            if (!UserExists(connection, transaction, a) || !UserExists(connection, transaction, b))
            {
                return AccessResult.NotFound("no such conversation");
            }

            if (user != a && user != b)
            {
                return AccessResult.Forbidden("not a member of this conversation");
            }

            var last = lastSeqOverride ?? LastSeq(connection, transaction, conv) ?? 0;
            return new AccessResult(new Membership(conv, "direct", "member", 1, null, last), null, null);
        }

        if (!Names.IsGroup(conv))
        {
            return AccessResult.NotFound("no such conversation");
        }

        var groupLast = lastSeqOverride ?? LastSeq(connection, transaction, conv);
        if (groupLast is null)
        {
            return AccessResult.NotFound("no such conversation");
        }

        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT role, joined_seq, removed_seq FROM members WHERE conv = $c AND user = $u";
        command.Parameters.AddWithValue("$c", conv);
        command.Parameters.AddWithValue("$u", user);
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            return AccessResult.Forbidden("not a member of this conversation");
        }

        long? removed = reader.IsDBNull(2) ? null : reader.GetInt64(2);
        return new AccessResult(new Membership(conv, "group", reader.GetString(0), reader.GetInt64(1), removed, groupLast.Value), null, null);
    }

    public static long? LastSeq(SqliteConnection connection, SqliteTransaction? transaction, string conv)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT last_seq FROM conversations WHERE conv = $c";
        command.Parameters.AddWithValue("$c", conv);
        return command.ExecuteScalar() is long v ? v : null;
    }

    public static bool UserExists(SqliteConnection connection, SqliteTransaction? transaction, string user)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT 1 FROM users WHERE user = $u";
        command.Parameters.AddWithValue("$u", user);
        return command.ExecuteScalar() is not null;
    }
}
