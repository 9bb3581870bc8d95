using Switchboard.Server.Storage;

namespace Switchboard.Server.Accounts;

/// <summary>
/// The rules of accounts: what a link takes (a free device number, the device limit, first replay positions at
/// each conversation's end), authenticating a token, unlinking. Records are kept by <see cref="IAccountStore"/>.
/// </summary>
internal sealed class AccountService(IAccountStore store, IMessageStore messages, TimeProvider time)
{
    private readonly SemaphoreSlim _links = new(1, 1);
    private long _unlinks;

    public ValueTask<bool> CreateUserAsync(string user, PasswordHash password, CancellationToken cancellationToken = default) =>
        store.CreateUserAsync(new UserRecord(user, password.Hash, password.Salt, password.Parameters, time.GetUtcNow().ToUnixTimeMilliseconds()), cancellationToken);

    public async ValueTask<PasswordHash?> GetPasswordAsync(string user, CancellationToken cancellationToken = default) =>
        await store.GetUserAsync(user, cancellationToken) is { } found ? new PasswordHash(found.Hash, found.Salt, found.Parameters) : null;

    public ValueTask<bool> UserExistsAsync(string user, CancellationToken cancellationToken = default) => store.UserExistsAsync(user, cancellationToken);

    public ValueTask<long?> GetLastSeenAsync(string user, CancellationToken cancellationToken = default) => store.GetLastSeenAsync(user, cancellationToken);

    /// <summary>
    /// Links a new device. Its replay positions start at each conversation's last seq (or the user's removal), so
    /// it is not flooded with old events; those come from the history API. Null when the user already has the
    /// most devices.
    /// </summary>
    public async ValueTask<int?> LinkDeviceAsync(string user, string name, byte[] tokenHash, int maxDevices, CancellationToken cancellationToken = default)
    {
        // One link at a time, so two links of one user cannot both pass the limit or take the same number.
        await _links.WaitAsync(cancellationToken);
        try
        {
            var devices = await store.GetDevicesAsync(user, cancellationToken);
            if (devices.Count(d => !d.Revoked) >= maxDevices)
            {
                return null;
            }

            var next = devices.Count == 0 ? 1 : devices.Max(d => d.Device) + 1; // numbers are never reused
            var cursors = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var membership in await messages.GetMembershipsAsync(user, cancellationToken))
            {
                cursors[membership.Conv] = membership.LastVisible;
            }

            var record = new DeviceRecord(user, next, name, tokenHash, time.GetUtcNow().ToUnixTimeMilliseconds(), false);
            return await store.AddDeviceAsync(record, cursors, cancellationToken) ? next : throw new InvalidOperationException($"device {user}/{next} exists");
        }
        finally
        {
            _links.Release();
        }
    }

    public ValueTask<DeviceIdentity?> AuthenticateAsync(string token, CancellationToken cancellationToken = default) =>
        store.FindByTokenAsync(Tokens.HashOf(token), cancellationToken);

    public async ValueTask<List<Protocol.DeviceInfo>> ListDevicesAsync(string user, int current, CancellationToken cancellationToken = default) =>
        [.. (await store.GetDevicesAsync(user, cancellationToken)).Where(d => !d.Revoked).Select(d => new Protocol.DeviceInfo(d.Device, d.Name, d.Created, d.Device == current))];

    /// <summary>
    /// Counts unlinks, each counted after its revocation is committed and before its socket is looked up. A
    /// connect that reads the same count before its token check and after registering its socket knows no unlink
    /// ran in between, so it need not check its token again; otherwise the unlink either found the socket or
    /// changed the count.
    /// </summary>
    public long Unlinks => Interlocked.Read(ref _unlinks);

    /// <summary>Revokes a device's token. False when there is no such linked device.</summary>
    public async ValueTask<bool> UnlinkAsync(string user, int device, CancellationToken cancellationToken = default)
    {
        try
        {
            return await store.RevokeDeviceAsync(user, device, cancellationToken);
        }
        finally
        {
            Interlocked.Increment(ref _unlinks);
        }
    }

    /// <summary>When a device's connection opened; bookkeeping for the next connection's receipt state.</summary>
    public ValueTask TouchDeviceAsync(string user, int device, CancellationToken cancellationToken = default) =>
        store.TouchDeviceAsync(user, device, time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken);

    public ValueTask SetLastSeenAsync(string user, long ts, CancellationToken cancellationToken = default) =>
        store.SetLastSeenAsync(user, ts, cancellationToken);

    public ValueTask SetMuteAsync(string user, string conv, long? until, CancellationToken cancellationToken = default) =>
        store.SetMuteAsync(user, conv, until, cancellationToken);

    /// <summary>The conversations the user has muted now, with until when (ms; long.MaxValue: until unmuted).</summary>
    public async ValueTask<Dictionary<string, long>> GetMutesAsync(string user, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var mutes = await store.GetMutesAsync(user, cancellationToken);
        foreach (var expired in mutes.Where(m => m.Value <= now).Select(m => m.Key).ToList())
        {
            mutes.Remove(expired);
        }

        return mutes;
    }

    /// <summary>How long an invite to a group stays good (WhatsApp's private invites: three days).</summary>
    public static readonly TimeSpan InviteLifetime = TimeSpan.FromDays(3);

    public ValueTask<GroupAddPrivacy> GetGroupAddPrivacyAsync(string user, CancellationToken cancellationToken = default) =>
        store.GetGroupAddPrivacyAsync(user, cancellationToken);

    public ValueTask SetGroupAddPrivacyAsync(string user, GroupAddPrivacy privacy, CancellationToken cancellationToken = default) =>
        store.SetGroupAddPrivacyAsync(user, privacy, cancellationToken);

    /// <summary>
    /// Splits the users an actor adds to a group into those whose privacy lets the actor add them and those who
    /// get an invite instead. <c>contacts</c> means a direct conversation with the actor that has had a message.
    /// </summary>
    public async ValueTask<(List<string> Allowed, List<string> Invited)> ConsentAsync(string actor, IEnumerable<string> users, CancellationToken cancellationToken = default)
    {
        var allowed = new List<string>();
        var invited = new List<string>();
        foreach (var user in users.Distinct(StringComparer.Ordinal))
        {
            var privacy = user == actor ? GroupAddPrivacy.Everyone : await store.GetGroupAddPrivacyAsync(user, cancellationToken);
            var ok = privacy switch
            {
                GroupAddPrivacy.Everyone => true,
                GroupAddPrivacy.Contacts => Protocol.Names.IsValidHandle(user)
                    && (await messages.GetLastSeqAsync(Protocol.Names.DirectConversation(actor, user), cancellationToken) ?? 0) > 0,
                _ => false,
            };
            (ok ? allowed : invited).Add(user);
        }

        return (allowed, invited);
    }

    public ValueTask AddInvitesAsync(string from, string conv, IEnumerable<string> users, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var expires = now + (long)InviteLifetime.TotalMilliseconds;
        return store.AddInvitesAsync([.. users.Select(u => new InviteRecord(u, conv, from, now, expires))], cancellationToken);
    }

    /// <summary>The user's invites that have not expired.</summary>
    public async ValueTask<List<InviteRecord>> GetInvitesAsync(string user, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        return [.. (await store.GetInvitesAsync(user, cancellationToken)).Where(i => i.Expires > now)];
    }

    /// <summary>Uses up the user's invite to a group; null when there is none that is still good.</summary>
    public async ValueTask<InviteRecord?> TakeInviteAsync(string user, string conv, CancellationToken cancellationToken = default) =>
        await store.TakeInviteAsync(user, conv, cancellationToken) is { } invite && invite.Expires > time.GetUtcNow().ToUnixTimeMilliseconds() ? invite : null;
}
