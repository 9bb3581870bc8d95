namespace Switchboard.Server.Accounts;

/// <summary>A user as stored: the password's Argon2id hash, its salt and the parameters it was made with.</summary>
internal sealed record UserRecord(string User, byte[] Hash, byte[] Salt, string Parameters, long Created);

/// <summary>A linked device as stored; a revoked one keeps its number (never reused) and loses its token.</summary>
internal sealed record DeviceRecord(string User, int Device, string Name, byte[]? TokenHash, long Created, bool Revoked);

/// <summary>Who may add a user to a group; the others send an invite the user accepts or not.</summary>
internal enum GroupAddPrivacy : byte
{
    /// <summary>Anyone (the default, as in WhatsApp).</summary>
    Everyone = 0,

    /// <summary>Users the user has a direct conversation with.</summary>
    Contacts = 1,

    /// <summary>No one: every add is an invite.</summary>
    Nobody = 2,
}

/// <summary>An invite to a group, made when an admin added a user whose privacy did not let them.</summary>
internal sealed record InviteRecord(string User, string Conv, string From, long Ts, long Expires);

/// <summary>An authenticated device, with when its previous connection opened.</summary>
internal sealed record DeviceIdentity(string User, int Device, long LastActive);

/// <summary>
/// The storage port for accounts: users, devices and their tokens, and the bookkeeping times. Like the message
/// store it keeps records and no rules (<see cref="AccountService"/> has those). Writes that matter are durable
/// when they complete; <see cref="TouchDeviceAsync"/> and <see cref="SetLastSeenAsync"/> are bookkeeping and may
/// be made durable later, with the next write that is.
/// </summary>
internal interface IAccountStore
{
    /// <summary>Stores a new user; false when the name is taken.</summary>
    ValueTask<bool> CreateUserAsync(UserRecord user, CancellationToken cancellationToken = default);

    ValueTask<UserRecord?> GetUserAsync(string user, CancellationToken cancellationToken = default);

    ValueTask<bool> UserExistsAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>Every device the user ever linked, revoked ones included, by number.</summary>
    ValueTask<List<DeviceRecord>> GetDevicesAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>
    /// Stores a new device with its token and its first replay positions, all at once; false when the device
    /// number is taken.
    /// </summary>
    ValueTask<bool> AddDeviceAsync(DeviceRecord device, IReadOnlyDictionary<string, long> cursors, CancellationToken cancellationToken = default);

    /// <summary>The device whose token has this hash, unless revoked.</summary>
    ValueTask<DeviceIdentity?> FindByTokenAsync(byte[] tokenHash, CancellationToken cancellationToken = default);

    /// <summary>Revokes a device and forgets its token; false when there is no such linked device.</summary>
    ValueTask<bool> RevokeDeviceAsync(string user, int device, CancellationToken cancellationToken = default);

    ValueTask TouchDeviceAsync(string user, int device, long ts, CancellationToken cancellationToken = default);

    ValueTask SetLastSeenAsync(string user, long ts, CancellationToken cancellationToken = default);

    ValueTask<long?> GetLastSeenAsync(string user, CancellationToken cancellationToken = default);

    ValueTask<GroupAddPrivacy> GetGroupAddPrivacyAsync(string user, CancellationToken cancellationToken = default);

    ValueTask SetGroupAddPrivacyAsync(string user, GroupAddPrivacy privacy, CancellationToken cancellationToken = default);

    /// <summary>Stores invites (a newer one to the same group replaces the older), durable on return.</summary>
    ValueTask AddInvitesAsync(IReadOnlyList<InviteRecord> invites, CancellationToken cancellationToken = default);

    /// <summary>A user's invites, expired ones included, by group.</summary>
    ValueTask<List<InviteRecord>> GetInvitesAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>Mutes a conversation for a user until <paramref name="until"/> (ms; long.MaxValue: until unmuted), or unmutes it (null).</summary>
    ValueTask SetMuteAsync(string user, string conv, long? until, CancellationToken cancellationToken = default);

    /// <summary>The user's mutes, expired ones included: conversation → muted until (ms).</summary>
    ValueTask<Dictionary<string, long>> GetMutesAsync(string user, CancellationToken cancellationToken = default);

    /// <summary>Stores a device's push registration (JSON), or removes it (null); durable on return.</summary>
    ValueTask SetPushAsync(string user, int device, string? registration, CancellationToken cancellationToken = default);

    ValueTask<string?> GetPushAsync(string user, int device, CancellationToken cancellationToken = default);

    /// <summary>Every user with at least one push registration.</summary>
    ValueTask<HashSet<string>> GetUsersWithPushAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores a device's identity key and signed prekey (JSON), and adds one-time prekeys (id → key); durable on return.</summary>
    ValueTask SetDeviceKeysAsync(string user, int device, string? keys, IReadOnlyList<(int Id, string Key)> oneTimeKeys, CancellationToken cancellationToken = default);

    ValueTask<string?> GetDeviceKeysAsync(string user, int device, CancellationToken cancellationToken = default);

    /// <summary>Removes and returns one of the device's one-time prekeys (the lowest id; null when none is left), and how many are left after it.</summary>
    ValueTask<((int Id, string Key)? Taken, int Left)> TakeOneTimeKeyAsync(string user, int device, CancellationToken cancellationToken = default);

    ValueTask<int> CountOneTimeKeysAsync(string user, int device, CancellationToken cancellationToken = default);

    /// <summary>Removes an invite and returns it; null when there was none.</summary>
    ValueTask<InviteRecord?> TakeInviteAsync(string user, string conv, CancellationToken cancellationToken = default);
}
