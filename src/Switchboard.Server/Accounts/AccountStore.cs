using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Accounts;

/// <summary>An authenticated device.</summary>
internal sealed record DeviceIdentity(string User, int Device, long LastActive);

/// <summary>Users and devices in the embedded database.</summary>
internal sealed class AccountStore(SqliteDatabase database, TimeProvider time)
{
    public bool TryCreateUser(string user, PasswordHash password)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO users(user, pw_hash, pw_salt, pw_params, created) VALUES ($u, $h, $s, $p, $t) ON CONFLICT DO NOTHING";
        command.Parameters.AddWithValue("$u", user);
        command.Parameters.AddWithValue("$h", password.Hash);
        command.Parameters.AddWithValue("$s", password.Salt);
        command.Parameters.AddWithValue("$p", password.Parameters);
        command.Parameters.AddWithValue("$t", time.GetUtcNow().ToUnixTimeMilliseconds());
        return command.ExecuteNonQuery() == 1;
    }

    public PasswordHash? GetPassword(string user)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT pw_hash, pw_salt, pw_params FROM users WHERE user = $u";
        command.Parameters.AddWithValue("$u", user);
        using var reader = command.ExecuteReader();
        return reader.Read() ? new PasswordHash((byte[])reader[0], (byte[])reader[1], reader.GetString(2)) : null;
    }

    public bool UserExists(string user)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 FROM users WHERE user = $u";
        command.Parameters.AddWithValue("$u", user);
        return command.ExecuteScalar() is not null;
    }

    public long? GetLastSeen(string user)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT last_seen FROM users WHERE user = $u";
        command.Parameters.AddWithValue("$u", user);
        return command.ExecuteScalar() is long v ? v : null;
    }

    /// <summary>
    /// Links a new device. Its delivered cursors start at each conversation's last seq, so it is not flooded
    /// with old events (those come from the history API). Null when the user already has the most devices.
    /// </summary>
    public int? LinkDevice(string user, string name, byte[] tokenHash, int maxDevices)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction(deferred: false);
        int active;
        int next;
        using (var count = connection.CreateCommand())
        {
            count.CommandText = "SELECT COUNT(*) FILTER (WHERE revoked = 0), COALESCE(MAX(device), 0) + 1 FROM devices WHERE user = $u";
            count.Parameters.AddWithValue("$u", user);
            using var reader = count.ExecuteReader();
            reader.Read();
            active = reader.GetInt32(0);
            next = reader.GetInt32(1);
        }

        if (active >= maxDevices)
        {
            return null;
        }

        using (var insert = connection.CreateCommand())
        {
            insert.CommandText = "INSERT INTO devices(user, device, name, token_hash, created, last_active) VALUES ($u, $d, $n, $h, $t, $t)";
            insert.Parameters.AddWithValue("$u", user);
            insert.Parameters.AddWithValue("$d", next);
            insert.Parameters.AddWithValue("$n", name);
            insert.Parameters.AddWithValue("$h", tokenHash);
            insert.Parameters.AddWithValue("$t", now);
            insert.ExecuteNonQuery();
        }

        using (var cursors = connection.CreateCommand())
        {
            cursors.CommandText = """
                INSERT INTO device_cursors(user, device, conv, delivered)
                SELECT $u, $d, m.conv, COALESCE(m.removed_seq, c.last_seq)
                FROM members m JOIN conversations c ON c.conv = m.conv
                WHERE m.user = $u
                """;
            cursors.Parameters.AddWithValue("$u", user);
            cursors.Parameters.AddWithValue("$d", next);
            cursors.ExecuteNonQuery();
        }

        transaction.Commit();
        return next;
    }

    public DeviceIdentity? Authenticate(string token)
    {
        using var session = database.Reads.Rent();
        var command = session.Command("SELECT user, device, last_active FROM devices WHERE token_hash = $h AND revoked = 0");
        command.Parameters.AddWithValue("$h", Tokens.HashOf(token));
        using var reader = command.ExecuteReader();
        return reader.Read() ? new DeviceIdentity(reader.GetString(0), reader.GetInt32(1), reader.GetInt64(2)) : null;
    }

    public List<DeviceInfo> ListDevices(string user, int current)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT device, name, created FROM devices WHERE user = $u AND revoked = 0 ORDER BY device";
        command.Parameters.AddWithValue("$u", user);
        using var reader = command.ExecuteReader();
        var list = new List<DeviceInfo>();
        while (reader.Read())
        {
            var device = reader.GetInt32(0);
            list.Add(new DeviceInfo(device, reader.GetString(1), reader.GetInt64(2), device == current));
        }

        return list;
    }

    private long _unlinks;

    /// <summary>
    /// Counts unlinks, each counted after its revocation is committed and before its socket is looked up. A
    /// connect that reads the same count before its token check and after registering its socket knows no unlink
    /// ran in between, so it need not check its token again; otherwise the unlink either found the socket or
    /// changed the count.
    /// </summary>
    public long Unlinks => Interlocked.Read(ref _unlinks);

    /// <summary>Revokes a device's token. False when there is no such linked device.</summary>
    public bool Unlink(string user, int device)
    {
        try
        {
            return RevokeToken(user, device);
        }
        finally
        {
            Interlocked.Increment(ref _unlinks);
        }
    }

    private bool RevokeToken(string user, int device)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE devices SET revoked = 1, token_hash = NULL WHERE user = $u AND device = $d AND revoked = 0";
        command.Parameters.AddWithValue("$u", user);
        command.Parameters.AddWithValue("$d", device);
        return command.ExecuteNonQuery() == 1;
    }

}
