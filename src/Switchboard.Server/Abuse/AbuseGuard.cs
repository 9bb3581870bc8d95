using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Abuse;

/// <summary>
/// The limits that keep people without an account (or with a fresh one) from hurting the people who have one:
/// sign-ups, logins and device links per address, failed logins per address and per account, group creation and
/// adds per user, and a bound on password hashing. Each check answers 0 (go) or the milliseconds to wait, which
/// the caller sends as <c>retry_after</c> with a 429. Refusals are counted on /metrics by limit.
/// </summary>
internal sealed class AbuseGuard : IDisposable
{
    private readonly AbuseOptions _options;
    private readonly SwitchboardMetrics _metrics;
    private readonly HashWorkers _hashes;
    private readonly IBucketSet _registrations;
    private readonly IBucketSet _links;
    private readonly IBucketSet _failuresByAddress;
    private readonly IBucketSet _failuresByAccount;
    private readonly IBucketSet _groupCreates;
    private readonly IBucketSet _groupAdds;
    private readonly IBucketSet _keyFetches;
    private readonly Timer _sweep;

    /// <param name="shared">Where the buckets live: in a cluster, shared by every node (Redis); else in this process.</param>
    public AbuseGuard(IOptions<AbuseOptions> options, SwitchboardMetrics metrics, IBucketSets? shared = null)
    {
        _options = options.Value;
        _metrics = metrics;
        _hashes = new HashWorkers(_options.EffectiveHashConcurrency, _options.HashQueue);
        var max = _options.MaxTrackedKeys;
        IBucketSet Make(string limit, BucketOptions bucket) => shared?.Create(limit, bucket, max) ?? new KeyedBuckets(bucket, max);
        _registrations = Make("registrations_per_address", _options.RegistrationsPerAddress);
        _links = Make("links_per_address", _options.LinksPerAddress);
        _failuresByAddress = Make("login_failures_per_address", _options.LoginFailuresPerAddress);
        _failuresByAccount = Make("login_failures_per_account", _options.LoginFailuresPerAccount);
        _groupCreates = Make("group_creates_per_user", _options.GroupCreatesPerUser);
        _groupAdds = Make("group_adds_per_user", _options.GroupAddsPerUser);
        _keyFetches = Make("key_fetches_per_user", _options.KeyFetchesPerUser);
        _sweep = new Timer(static s => ((AbuseGuard)s!).Sweep(), this, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));

        metrics.Observe("switchboard_abuse_enabled", "1 when the sign-up, login and device-link limits are on.", () => _options.Enabled ? 1 : 0);
        metrics.Observe("switchboard_abuse_hashes_running", "Password hashes being computed.", () => _hashes.Running);
        metrics.Observe("switchboard_abuse_hashes_queued", "Requests waiting for a password hash slot.", () => _hashes.Queued);
        metrics.Observe("switchboard_abuse_tracked_keys", "Addresses, accounts and users with a bucket that is not full.", () =>
            _registrations.Count + _links.Count + _failuresByAddress.Count + _failuresByAccount.Count + _groupCreates.Count + _groupAdds.Count + _keyFetches.Count);
    }

    public bool Enabled => _options.Enabled;

    /// <summary>What to tell a client refused a hashing slot: about the time the queue ahead of it takes.</summary>
    public const long HashRetryAfterMs = 1000;

    /// <summary>
    /// Computes a password hash on the hashing threads, after waiting for a slot; <c>Admitted</c> false (counted)
    /// when the queue is full, to be answered with 429 and <see cref="HashRetryAfterMs"/>.
    /// </summary>
    public async ValueTask<(bool Admitted, T Result)> HashAsync<T>(Func<T> hash, CancellationToken cancellationToken)
    {
        var result = await _hashes.RunAsync(hash, cancellationToken);
        if (!result.Admitted)
        {
            _metrics.AbuseRefused.WithLabels("hashing").Inc();
        }

        return result;
    }

    public async ValueTask<long> RegistrationAsync(string address) => _options.Enabled ? Count("registrations_per_address", await _registrations.TryTakeAsync(address)) : 0;

    /// <summary>
    /// Before a login's password is checked: refused while the address or the account has failed too often, or
    /// the address logged in too often. Every login is counted as a failure until it succeeds
    /// (<see cref="LinkDidNotFailAsync"/> gives it back), so logins checked at the same time cannot overrun the bound.
    /// </summary>
    public async ValueTask<long> LinkAttemptAsync(string address, string user)
    {
        if (!_options.Enabled)
        {
            return 0;
        }

        var wait = Count("login_failures_per_address", await _failuresByAddress.WaitAsync(address));
        if (wait == 0)
        {
            wait = Count("login_failures_per_account", await _failuresByAccount.WaitAsync(user));
        }

        if (wait == 0)
        {
            wait = Count("links_per_address", await _links.TryTakeAsync(address));
        }

        if (wait > 0)
        {
            return wait;
        }

        if (Count("login_failures_per_address", await _failuresByAddress.TryTakeAsync(address)) is > 0 and var addressWait)
        {
            return addressWait;
        }

        if (Count("login_failures_per_account", await _failuresByAccount.TryTakeAsync(user)) is > 0 and var accountWait)
        {
            await _failuresByAddress.RefundAsync(address);
            return accountWait;
        }

        return 0;
    }

    /// <summary>The password was right, or it was never checked: the login was not a failure after all.</summary>
    public async ValueTask LinkDidNotFailAsync(string address, string user)
    {
        if (_options.Enabled)
        {
            await _failuresByAddress.RefundAsync(address);
            await _failuresByAccount.RefundAsync(user);
        }
    }

    public async ValueTask<long> GroupCreateAsync(string user) => Count("group_creates_per_user", await _groupCreates.TryTakeAsync(user));

    public async ValueTask<long> KeyFetchAsync(string user) => Count("key_fetches_per_user", await _keyFetches.TryTakeAsync(user));

    public async ValueTask<long> GroupAddsAsync(string user, int members) => members <= 0 ? 0 : Count("group_adds_per_user", await _groupAdds.TryTakeAsync(user, members));

    /// <summary>
    /// The key an address is limited by: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64, the block a single
    /// subscriber is given, so one machine cannot dodge a limit by walking its own prefix.
    /// </summary>
    public static string AddressKey(IPAddress? address)
    {
        if (address is null)
        {
            return "-";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return address.ToString();
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes).ToString() + "/64";
    }

    public void Dispose()
    {
        _sweep.Dispose();
        _hashes.Dispose();
    }

    private long Count(string limit, long wait)
    {
        if (wait > 0)
        {
            _metrics.AbuseRefused.WithLabels(limit).Inc();
        }

        return wait;
    }

    private void Sweep()
    {
        _registrations.Sweep();
        _links.Sweep();
        _failuresByAddress.Sweep();
        _failuresByAccount.Sweep();
        _groupCreates.Sweep();
        _groupAdds.Sweep();
        _keyFetches.Sweep();
    }
}
