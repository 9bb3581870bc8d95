using RocksDbSharp;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Accounts;

/// <summary>
/// Accounts in the embedded RocksDB (same database as the messages; keys in <see cref="RocksKeys"/>). The few
/// writes that must check before they write (a taken name, a taken device number, revoking) hold one lock, which
/// is enough in one process; they are rare next to messages.
/// </summary>
internal sealed class RocksAccountStore(RocksDatabase database) : IAccountStore
{
    private readonly Lock _writes = new();

    public ValueTask<bool> CreateUserAsync(UserRecord user, CancellationToken cancellationToken = default)
    {
        var keys = new RocksKeys.Builder();
        var value = new RecordCodec.Writer();
        value.Start().Blob(user.Hash).Blob(user.Salt).Text(user.Parameters).UInt((ulong)user.Created);
        using var lease = database.Enter();
        lock (_writes)
        {
            var key = keys.UserOf(user.User).Span;
            if (lease.Db.Get(key, lease.Handles.Meta) is not null)
            {
                return ValueTask.FromResult(false);
            }

            lease.Db.Put(key, value.Span, lease.Handles.Meta, RocksDatabase.Synced);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask<UserRecord?> GetUserAsync(string user, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(new RocksKeys.Builder().UserOf(user).Span, lease.Handles.Meta);
        if (value is null)
        {
            return ValueTask.FromResult<UserRecord?>(null);
        }

        var r = new RecordCodec.Reader(value);
        return ValueTask.FromResult<UserRecord?>(new UserRecord(user, r.Blob(), r.Blob(), r.Text(), (long)r.UInt()));
    }

    public ValueTask<bool> UserExistsAsync(string user, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        return ValueTask.FromResult(lease.Db.Get(new RocksKeys.Builder().UserOf(user).Span, lease.Handles.Meta) is not null);
    }

    public ValueTask<List<DeviceRecord>> GetDevicesAsync(string user, CancellationToken cancellationToken = default)
    {
        var list = new List<DeviceRecord>();
        using var lease = database.Enter();
        var prefix = new RocksKeys.Builder().DevicePrefix(user).ToArray();
        RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, prefix,
            (key, value) => list.Add(ReadDevice(user, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(key[prefix.Length..]), value)));

        return ValueTask.FromResult(list);
    }

    public ValueTask<bool> AddDeviceAsync(DeviceRecord device, IReadOnlyDictionary<string, long> cursors, CancellationToken cancellationToken = default)
    {
        var keys = new RocksKeys.Builder();
        var value = new RecordCodec.Writer();
        using var lease = database.Enter();
        var h = lease.Handles;
        lock (_writes)
        {
            if (lease.Db.Get(keys.DeviceOf(device.User, device.Device).Span, h.Meta) is not null)
            {
                return ValueTask.FromResult(false);
            }

            using var write = new WriteBatch();
            WriteDevice(value, device);
            write.Put(keys.DeviceOf(device.User, device.Device).Span, value.Span, h.Meta);
            if (device.TokenHash is { } hash)
            {
                value.Start().Text(device.User).UInt((ulong)device.Device);
                write.Put(keys.TokenOf(hash).Span, value.Span, h.Meta);
            }

            RecordCodec.WriteNumber(value, device.Created);
            write.Put(keys.LastActiveOf(device.User, device.Device).Span, value.Span, h.Meta);
            foreach (var (conv, delivered) in cursors)
            {
                RecordCodec.WriteNumber(value, delivered);
                write.Put(keys.DeviceCursorOf(device.User, device.Device, conv).Span, value.Span, h.Cursors);
            }

            lease.Db.Write(write, RocksDatabase.Synced);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask<DeviceIdentity?> FindByTokenAsync(byte[] tokenHash, CancellationToken cancellationToken = default)
    {
        var keys = new RocksKeys.Builder();
        using var lease = database.Enter();
        var found = lease.Db.Get(keys.TokenOf(tokenHash).Span, lease.Handles.Meta);
        if (found is null)
        {
            return ValueTask.FromResult<DeviceIdentity?>(null);
        }

        var r = new RecordCodec.Reader(found);
        var user = r.Text();
        var device = (int)r.UInt();
        var record = lease.Db.Get(keys.DeviceOf(user, device).Span, lease.Handles.Meta);
        if (record is null || ReadDevice(user, device, record).Revoked)
        {
            return ValueTask.FromResult<DeviceIdentity?>(null);
        }

        var active = lease.Db.Get(keys.LastActiveOf(user, device).Span, lease.Handles.Meta);
        return ValueTask.FromResult<DeviceIdentity?>(new DeviceIdentity(user, device, active is null ? 0 : RecordCodec.ReadNumber(active)));
    }

    public ValueTask<bool> RevokeDeviceAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        var keys = new RocksKeys.Builder();
        var value = new RecordCodec.Writer();
        using var lease = database.Enter();
        var h = lease.Handles;
        lock (_writes)
        {
            var found = lease.Db.Get(keys.DeviceOf(user, device).Span, h.Meta);
            if (found is null || ReadDevice(user, device, found) is not { Revoked: false } record)
            {
                return ValueTask.FromResult(false);
            }

            using var write = new WriteBatch();
            WriteDevice(value, record with { Revoked = true, TokenHash = null });
            write.Put(keys.DeviceOf(user, device).Span, value.Span, h.Meta);
            if (record.TokenHash is { } hash)
            {
                write.Delete(keys.TokenOf(hash).Span, h.Meta);
            }

            lease.Db.Write(write, RocksDatabase.Synced);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask TouchDeviceAsync(string user, int device, long ts, CancellationToken cancellationToken = default)
    {
        var value = new RecordCodec.Writer();
        RecordCodec.WriteNumber(value, ts);
        using var lease = database.Enter();
        lease.Db.Put(new RocksKeys.Builder().LastActiveOf(user, device).Span, value.Span, lease.Handles.Meta, RocksDatabase.Unsynced);
        return ValueTask.CompletedTask;
    }

    public ValueTask SetLastSeenAsync(string user, long ts, CancellationToken cancellationToken = default)
    {
        var value = new RecordCodec.Writer();
        RecordCodec.WriteNumber(value, ts);
        using var lease = database.Enter();
        lease.Db.Put(new RocksKeys.Builder().LastSeenOf(user).Span, value.Span, lease.Handles.Meta, RocksDatabase.Unsynced);
        return ValueTask.CompletedTask;
    }

    public ValueTask<long?> GetLastSeenAsync(string user, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(new RocksKeys.Builder().LastSeenOf(user).Span, lease.Handles.Meta);
        return ValueTask.FromResult(value is null ? (long?)null : RecordCodec.ReadNumber(value));
    }

    public ValueTask<GroupAddPrivacy> GetGroupAddPrivacyAsync(string user, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(new RocksKeys.Builder().PrivacyOf(user).Span, lease.Handles.Meta);
        return ValueTask.FromResult(value is { Length: > 0 } ? (GroupAddPrivacy)value[0] : GroupAddPrivacy.Everyone);
    }

    public ValueTask SetGroupAddPrivacyAsync(string user, GroupAddPrivacy privacy, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        lease.Db.Put(new RocksKeys.Builder().PrivacyOf(user).Span, [(byte)privacy], lease.Handles.Meta, RocksDatabase.Synced);
        return ValueTask.CompletedTask;
    }

    public ValueTask AddInvitesAsync(IReadOnlyList<InviteRecord> invites, CancellationToken cancellationToken = default)
    {
        if (invites.Count == 0)
        {
            return ValueTask.CompletedTask;
        }

        var keys = new RocksKeys.Builder();
        var value = new RecordCodec.Writer();
        using var lease = database.Enter();
        using var write = new WriteBatch();
        foreach (var invite in invites)
        {
            value.Start().Text(invite.From).UInt((ulong)invite.Ts).UInt((ulong)invite.Expires);
            write.Put(keys.InviteOf(invite.User, invite.Conv).Span, value.Span, lease.Handles.Meta);
        }

        lease.Db.Write(write, RocksDatabase.Synced);
        return ValueTask.CompletedTask;
    }

    public ValueTask<List<InviteRecord>> GetInvitesAsync(string user, CancellationToken cancellationToken = default)
    {
        var list = new List<InviteRecord>();
        using var lease = database.Enter();
        var prefix = new RocksKeys.Builder().InvitePrefix(user).ToArray();
        RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, prefix,
            (key, value) => list.Add(ReadInvite(user, System.Text.Encoding.UTF8.GetString(key[prefix.Length..]), value)));
        return ValueTask.FromResult(list);
    }

    public ValueTask<InviteRecord?> TakeInviteAsync(string user, string conv, CancellationToken cancellationToken = default)
    {
        var key = new RocksKeys.Builder().InviteOf(user, conv).ToArray();
        using var lease = database.Enter();
        lock (_writes)
        {
            if (lease.Db.Get(key, lease.Handles.Meta) is not { } value)
            {
                return ValueTask.FromResult<InviteRecord?>(null);
            }

            lease.Db.Remove(key, lease.Handles.Meta, RocksDatabase.Synced);
            return ValueTask.FromResult<InviteRecord?>(ReadInvite(user, conv, value));
        }
    }

    public ValueTask SetMuteAsync(string user, string conv, long? until, CancellationToken cancellationToken = default)
    {
        var key = new RocksKeys.Builder().MuteOf(user, conv);
        using var lease = database.Enter();
        if (until is { } ms)
        {
            var value = new RecordCodec.Writer();
            RecordCodec.WriteNumber(value, ms);
            lease.Db.Put(key.Span, value.Span, lease.Handles.Meta, RocksDatabase.Synced);
        }
        else
        {
            lease.Db.Remove(key.ToArray(), lease.Handles.Meta, RocksDatabase.Synced);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<Dictionary<string, long>> GetMutesAsync(string user, CancellationToken cancellationToken = default)
    {
        var mutes = new Dictionary<string, long>(StringComparer.Ordinal);
        using var lease = database.Enter();
        var prefix = new RocksKeys.Builder().MutePrefix(user).ToArray();
        RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, prefix,
            (key, value) => mutes[System.Text.Encoding.UTF8.GetString(key[prefix.Length..])] = RecordCodec.ReadNumber(value));
        return ValueTask.FromResult(mutes);
    }

    public ValueTask SetPushAsync(string user, int device, string? registration, CancellationToken cancellationToken = default)
    {
        var key = new RocksKeys.Builder().PushOf(user, device).ToArray();
        using var lease = database.Enter();
        if (registration is null)
        {
            lease.Db.Remove(key, lease.Handles.Meta, RocksDatabase.Synced);
        }
        else
        {
            lease.Db.Put(key, System.Text.Encoding.UTF8.GetBytes(registration), lease.Handles.Meta, RocksDatabase.Synced);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<HashSet<string>> GetUsersWithPushAsync(CancellationToken cancellationToken = default)
    {
        var users = new HashSet<string>(StringComparer.Ordinal);
        using var lease = database.Enter();
        RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, [RocksKeys.Push], (key, _) =>
        {
            var name = key[1..];
            users.Add(System.Text.Encoding.UTF8.GetString(name[..name.IndexOf((byte)0)]));
        });
        return ValueTask.FromResult(users);
    }

    public ValueTask<string?> GetPushAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(new RocksKeys.Builder().PushOf(user, device).ToArray(), lease.Handles.Meta);
        return ValueTask.FromResult(value is null ? null : System.Text.Encoding.UTF8.GetString(value));
    }

    public ValueTask SetDeviceKeysAsync(string user, int device, string? keys, IReadOnlyList<(int Id, string Key)> oneTimeKeys, CancellationToken cancellationToken = default)
    {
        var builder = new RocksKeys.Builder();
        using var lease = database.Enter();
        using var write = new WriteBatch();
        if (keys is not null)
        {
            write.Put(builder.DeviceKeysOf(user, device).ToArray(), System.Text.Encoding.UTF8.GetBytes(keys), lease.Handles.Meta);
        }

        foreach (var (id, key) in oneTimeKeys)
        {
            write.Put(builder.OneTimeKeyOf(user, device, id).ToArray(), System.Text.Encoding.UTF8.GetBytes(key), lease.Handles.Meta);
        }

        lease.Db.Write(write, RocksDatabase.Synced);
        return ValueTask.CompletedTask;
    }

    public ValueTask<string?> GetDeviceKeysAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        using var lease = database.Enter();
        var value = lease.Db.Get(new RocksKeys.Builder().DeviceKeysOf(user, device).ToArray(), lease.Handles.Meta);
        return ValueTask.FromResult(value is null ? null : System.Text.Encoding.UTF8.GetString(value));
    }

    public ValueTask<((int Id, string Key)? Taken, int Left)> TakeOneTimeKeyAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        var prefix = new RocksKeys.Builder().OneTimeKeyPrefix(user, device).ToArray();
        using var lease = database.Enter();
        lock (_writes)
        {
            (byte[] Key, int Id, string Value)? first = null;
            var count = 0;
            RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, prefix, (key, value) =>
            {
                count++;
                first ??= (key.ToArray(), System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(key[prefix.Length..]), System.Text.Encoding.UTF8.GetString(value));
            });
            if (first is not { } found)
            {
                return ValueTask.FromResult<((int, string)?, int)>((null, 0));
            }

            lease.Db.Remove(found.Key, lease.Handles.Meta, RocksDatabase.Synced); // a one-time prekey is handed out once
            return ValueTask.FromResult<((int, string)?, int)>(((found.Id, found.Value), count - 1));
        }
    }

    public ValueTask<int> CountOneTimeKeysAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        var count = 0;
        using var lease = database.Enter();
        RocksMessageStore.ScanPrefix(lease, lease.Handles.Meta, new RocksKeys.Builder().OneTimeKeyPrefix(user, device).ToArray(), (_, _) => count++);
        return ValueTask.FromResult(count);
    }

    private static InviteRecord ReadInvite(string user, string conv, ReadOnlySpan<byte> value)
    {
        var r = new RecordCodec.Reader(value);
        return new InviteRecord(user, conv, r.Text(), (long)r.UInt(), (long)r.UInt());
    }

    private static void WriteDevice(RecordCodec.Writer w, DeviceRecord d) =>
        w.Start().Text(d.Name).Blob(d.TokenHash ?? []).UInt((ulong)d.Created).Byte(d.Revoked ? (byte)1 : (byte)0);

    private static DeviceRecord ReadDevice(string user, int device, ReadOnlySpan<byte> value)
    {
        var r = new RecordCodec.Reader(value);
        var name = r.Text();
        var hash = r.Blob();
        var created = (long)r.UInt();
        var revoked = r.Byte() != 0;
        return new DeviceRecord(user, device, name, hash.Length == 0 ? null : hash, created, revoked);
    }
}
