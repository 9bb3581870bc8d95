using Npgsql;
using Switchboard.Server.Accounts;

namespace Switchboard.Server.Storage.Postgres;

/// <summary>
/// Accounts of a cluster on the PostgreSQL shards: a user's rows (user, devices, keys, invites, mutes) on the
/// user's shard (<see cref="PgShards.ForUser"/>). A token is looked up on every shard at once (its hash names no
/// user). A new device's first replay positions belong to conversations, so they go to the conversations' shards
/// after the device row is written. Bookkeeping writes (last active, last seen) commit without waiting for the
/// flush, as the port allows.
/// </summary>
internal sealed class PgAccountStore(PgShards shards) : IAccountStore
{
    private NpgsqlCommand User(string user, string sql)
    {
        var command = shards[shards.ForUser(user)].CreateCommand(sql);
        command.Parameters.AddWithValue("user", user);
        return command;
    }

    public async ValueTask<bool> CreateUserAsync(UserRecord user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user.User, "INSERT INTO users (usr, hash, salt, parameters, created) VALUES (@user, @hash, @salt, @parameters, @created) ON CONFLICT (usr) DO NOTHING");
        command.Parameters.AddWithValue("hash", user.Hash);
        command.Parameters.AddWithValue("salt", user.Salt);
        command.Parameters.AddWithValue("parameters", user.Parameters);
        command.Parameters.AddWithValue("created", user.Created);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async ValueTask<UserRecord?> GetUserAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT hash, salt, parameters, created FROM users WHERE usr = @user");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new UserRecord(user, (byte[])reader[0], (byte[])reader[1], reader.GetString(2), reader.GetInt64(3))
            : null;
    }

    public async ValueTask<bool> UserExistsAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT EXISTS (SELECT 1 FROM users WHERE usr = @user)");
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async ValueTask<List<DeviceRecord>> GetDevicesAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT device, name, token_hash, created, revoked FROM devices WHERE usr = @user ORDER BY device");
        var list = new List<DeviceRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(new DeviceRecord(user, reader.GetInt32(0), reader.GetString(1), reader.IsDBNull(2) ? null : (byte[])reader[2], reader.GetInt64(3), reader.GetBoolean(4)));
        }

        return list;
    }

    public async ValueTask<bool> AddDeviceAsync(DeviceRecord device, IReadOnlyDictionary<string, long> cursors, CancellationToken cancellationToken = default)
    {
        await using (var command = User(device.User, """
            INSERT INTO devices (usr, device, name, token_hash, created, last_active, revoked) VALUES (@user, @device, @name, @token, @created, @created, @revoked)
            ON CONFLICT (usr, device) DO NOTHING
            """))
        {
            command.Parameters.AddWithValue("device", device.Device);
            command.Parameters.AddWithValue("name", device.Name);
            command.Parameters.Add(new NpgsqlParameter("token", NpgsqlTypes.NpgsqlDbType.Bytea) { Value = (object?)device.TokenHash ?? DBNull.Value });
            command.Parameters.AddWithValue("created", device.Created);
            command.Parameters.AddWithValue("revoked", device.Revoked);
            if (await command.ExecuteNonQueryAsync(cancellationToken) != 1)
            {
                return false;
            }
        }

        // The replay positions, on each conversation's shard. Should this fail, the login fails and the device
        // is left without positions: it would replay what it may see from the start, never miss anything.
        foreach (var group in cursors.GroupBy(c => shards.ForConversation(c.Key)))
        {
            await using var command = shards[group.Key].CreateCommand("""
                INSERT INTO device_cursors (usr, device, conv, seq) SELECT @user, @device, * FROM unnest(@conv, @seq)
                ON CONFLICT (usr, device, conv) DO UPDATE SET seq = GREATEST(device_cursors.seq, EXCLUDED.seq)
                """);
            command.Parameters.AddWithValue("user", device.User);
            command.Parameters.AddWithValue("device", device.Device);
            command.Parameters.AddWithValue("conv", group.Select(c => c.Key).ToArray());
            command.Parameters.AddWithValue("seq", group.Select(c => c.Value).ToArray());
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        return true;
    }

    /// <summary>Asks every shard; a token found on one that answered is enough (a shard down refuses only its own users).</summary>
    public async ValueTask<DeviceIdentity?> FindByTokenAsync(byte[] tokenHash, CancellationToken cancellationToken = default)
    {
        var reads = Enumerable.Range(0, shards.Count).Select(async shard =>
        {
            await using var command = shards[shard].CreateCommand("SELECT usr, device, last_active FROM devices WHERE token_hash = @token AND NOT revoked");
            command.Parameters.AddWithValue("token", tokenHash);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            return await reader.ReadAsync(cancellationToken) ? new DeviceIdentity(reader.GetString(0), reader.GetInt32(1), reader.GetInt64(2)) : null;
        }).ToList();
        try
        {
            await Task.WhenAll(reads);
        }
        catch (Exception) when (reads.Any(r => r.IsCompletedSuccessfully && r.Result is not null))
        {
        }

        return reads.Select(r => r.Result).FirstOrDefault(f => f is not null);
    }

    public async ValueTask<bool> RevokeDeviceAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "UPDATE devices SET revoked = true, token_hash = NULL WHERE usr = @user AND device = @device AND NOT revoked");
        command.Parameters.AddWithValue("device", device);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public async ValueTask TouchDeviceAsync(string user, int device, long ts, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT set_config('synchronous_commit', 'off', true); UPDATE devices SET last_active = @ts WHERE usr = @user AND device = @device");
        command.Parameters.AddWithValue("device", device);
        command.Parameters.AddWithValue("ts", ts);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask SetLastSeenAsync(string user, long ts, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT set_config('synchronous_commit', 'off', true); UPDATE users SET last_seen = GREATEST(coalesce(last_seen, 0), @ts) WHERE usr = @user");
        command.Parameters.AddWithValue("ts", ts);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask<long?> GetLastSeenAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT last_seen FROM users WHERE usr = @user");
        return await command.ExecuteScalarAsync(cancellationToken) is long ts ? ts : null;
    }

    public async ValueTask<GroupAddPrivacy> GetGroupAddPrivacyAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT privacy FROM users WHERE usr = @user");
        return await command.ExecuteScalarAsync(cancellationToken) is short value ? (GroupAddPrivacy)value : GroupAddPrivacy.Everyone;
    }

    public async ValueTask SetGroupAddPrivacyAsync(string user, GroupAddPrivacy privacy, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "UPDATE users SET privacy = @privacy WHERE usr = @user");
        command.Parameters.AddWithValue("privacy", (short)privacy);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask AddInvitesAsync(IReadOnlyList<InviteRecord> invites, CancellationToken cancellationToken = default)
    {
        foreach (var group in invites.GroupBy(i => shards.ForUser(i.User)))
        {
            await using var command = shards[group.Key].CreateCommand("""
                INSERT INTO invites (usr, conv, sender, ts, expires) SELECT * FROM unnest(@user, @conv, @sender, @ts, @expires)
                ON CONFLICT (usr, conv) DO UPDATE SET sender = EXCLUDED.sender, ts = EXCLUDED.ts, expires = EXCLUDED.expires
                """);
            var list = group.GroupBy(i => (i.User, i.Conv)).Select(g => g.Last()).ToList();
            command.Parameters.AddWithValue("user", list.Select(i => i.User).ToArray());
            command.Parameters.AddWithValue("conv", list.Select(i => i.Conv).ToArray());
            command.Parameters.AddWithValue("sender", list.Select(i => i.From).ToArray());
            command.Parameters.AddWithValue("ts", list.Select(i => i.Ts).ToArray());
            command.Parameters.AddWithValue("expires", list.Select(i => i.Expires).ToArray());
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    public async ValueTask<List<InviteRecord>> GetInvitesAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT conv, sender, ts, expires FROM invites WHERE usr = @user ORDER BY conv");
        var list = new List<InviteRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(new InviteRecord(user, reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3)));
        }

        return list;
    }

    public async ValueTask<InviteRecord?> TakeInviteAsync(string user, string conv, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "DELETE FROM invites WHERE usr = @user AND conv = @conv RETURNING sender, ts, expires");
        command.Parameters.AddWithValue("conv", conv);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new InviteRecord(user, conv, reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2)) : null;
    }

    public async ValueTask SetMuteAsync(string user, string conv, long? until, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, until is null
            ? "DELETE FROM mutes WHERE usr = @user AND conv = @conv"
            : "INSERT INTO mutes (usr, conv, until) VALUES (@user, @conv, @until) ON CONFLICT (usr, conv) DO UPDATE SET until = EXCLUDED.until");
        command.Parameters.AddWithValue("conv", conv);
        if (until is { } ms)
        {
            command.Parameters.AddWithValue("until", ms);
        }

        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask<Dictionary<string, long>> GetMutesAsync(string user, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT conv, until FROM mutes WHERE usr = @user");
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            map[reader.GetString(0)] = reader.GetInt64(1);
        }

        return map;
    }

    public async ValueTask SetPushAsync(string user, int device, string? registration, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "UPDATE devices SET push = @push WHERE usr = @user AND device = @device");
        command.Parameters.AddWithValue("device", device);
        command.Parameters.Add(new NpgsqlParameter("push", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)registration ?? DBNull.Value });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async ValueTask<string?> GetPushAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT push FROM devices WHERE usr = @user AND device = @device");
        command.Parameters.AddWithValue("device", device);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public async ValueTask<HashSet<string>> GetUsersWithPushAsync(CancellationToken cancellationToken = default)
    {
        var users = new HashSet<string>(StringComparer.Ordinal);
        for (var shard = 0; shard < shards.Count; shard++)
        {
            await using var command = shards[shard].CreateCommand("SELECT DISTINCT usr FROM devices WHERE push IS NOT NULL");
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                users.Add(reader.GetString(0));
            }
        }

        return users;
    }

    public async ValueTask SetDeviceKeysAsync(string user, int device, string? keys, IReadOnlyList<(int Id, string Key)> oneTimeKeys, CancellationToken cancellationToken = default)
    {
        await using var connection = await shards[shards.ForUser(user)].OpenConnectionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection);
        if (keys is not null)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("UPDATE devices SET keys = @keys WHERE usr = @user AND device = @device")
            {
                Parameters = { new("keys", keys), new("user", user), new("device", device) },
            });
        }

        if (oneTimeKeys.Count > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("""
                INSERT INTO one_time_keys (usr, device, id, key) SELECT @user, @device, * FROM unnest(@id, @key)
                ON CONFLICT (usr, device, id) DO UPDATE SET key = EXCLUDED.key
                """)
            {
                Parameters = { new("user", user), new("device", device), new("id", oneTimeKeys.Select(k => k.Id).ToArray()), new("key", oneTimeKeys.Select(k => k.Key).ToArray()) },
            });
        }

        if (batch.BatchCommands.Count > 0)
        {
            await batch.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    public async ValueTask<string?> GetDeviceKeysAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT keys FROM devices WHERE usr = @user AND device = @device");
        command.Parameters.AddWithValue("device", device);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary>The lowest-numbered key, taken with <c>SKIP LOCKED</c> so two fetches at once never get the same one.</summary>
    public async ValueTask<((int Id, string Key)? Taken, int Left)> TakeOneTimeKeyAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, """
            WITH taken AS (
                DELETE FROM one_time_keys WHERE (usr, device, id) = (
                    SELECT usr, device, id FROM one_time_keys WHERE usr = @user AND device = @device ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING id, key)
            SELECT id, key, (SELECT count(*) FROM one_time_keys WHERE usr = @user AND device = @device) - 1 FROM taken
            """);
        command.Parameters.AddWithValue("device", device);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? ((reader.GetInt32(0), reader.GetString(1)), (int)reader.GetInt64(2))
            : (null, 0);
    }

    public async ValueTask<int> CountOneTimeKeysAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        await using var command = User(user, "SELECT count(*) FROM one_time_keys WHERE usr = @user AND device = @device");
        command.Parameters.AddWithValue("device", device);
        return (int)(long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
