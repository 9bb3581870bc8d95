using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Switchboard.Server.Abuse;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Gateway;

/// <summary>
/// Bounds on connections that have not proven who they are: from accept (or, on Kestrel's path, from the upgrade
/// request) until their <c>hello</c> is accepted, at most <see cref="GatewayOptions.MaxUnauthenticated"/> in all and
/// <see cref="GatewayOptions.MaxUnauthenticatedPerAddress"/> from one address (IPv6 per /64). On the gateway's own
/// sockets it also applies Kestrel's <c>MaxConcurrentConnections</c> and <c>MaxConcurrentUpgradedConnections</c>
/// (Kestrel applies them itself on its path). A connection over a bound is refused before anything of it is read.
/// </summary>
internal sealed class GatewayAdmission
{
    private readonly GatewayOptions _options;
    private readonly SwitchboardMetrics _metrics;
    // Read on each use: Kestrel binds its limits from configuration when it starts, after this is made.
    private readonly KestrelServerLimits _limits;
    private readonly HashSet<IPNetwork> _trusted;
    private readonly ConcurrentDictionary<string, int> _byAddress = new(StringComparer.Ordinal);
    private int _unauthenticated;
    private long _owned;
    private long _upgraded;

    public GatewayAdmission(IOptions<GatewayOptions> options, IOptions<KestrelServerOptions> kestrel, IOptions<ServerOptions> server, SwitchboardMetrics metrics)
    {
        _options = options.Value;
        _metrics = metrics;
        _limits = kestrel.Value.Limits;
        _trusted = [.. server.Value.TrustedNetworks()];
        metrics.Observe("switchboard_gateway_unauthenticated", "Connections accepted that have not sent an accepted hello yet.", () => Volatile.Read(ref _unauthenticated));
    }

    /// <summary>A connection's place among the unauthenticated; null when it is refused (counted on /metrics).</summary>
    public Slot? TryEnter(IPAddress? peer, bool owned)
    {
        if (owned && _limits.MaxConcurrentConnections is { } max && Interlocked.Increment(ref _owned) > max)
        {
            Interlocked.Decrement(ref _owned);
            return Refused("max_connections");
        }

        if (Interlocked.Increment(ref _unauthenticated) > _options.MaxUnauthenticated)
        {
            Interlocked.Decrement(ref _unauthenticated);
            LeaveOwned(owned);
            return Refused("unauthenticated");
        }

        // Behind a trusted reverse proxy every client has the proxy's address: only the total bounds them.
        string? key = null;
        if (peer is not null && !_trusted.Any(n => n.Contains(peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer)))
        {
            key = AbuseGuard.AddressKey(peer);
            if (_byAddress.AddOrUpdate(key, 1, static (_, n) => n + 1) > _options.MaxUnauthenticatedPerAddress)
            {
                Leave(key);
                Interlocked.Decrement(ref _unauthenticated);
                LeaveOwned(owned);
                return Refused("unauthenticated_per_address");
            }
        }

        return new Slot(this, key, owned);
    }

    private Slot? Refused(string reason)
    {
        _metrics.GatewayRefused.WithLabels(reason).Inc();
        return null;
    }

    private void Leave(string key)
    {
        while (_byAddress.TryGetValue(key, out var count))
        {
            if (count <= 1 ? _byAddress.TryRemove(new KeyValuePair<string, int>(key, count)) : _byAddress.TryUpdate(key, count - 1, count))
            {
                return;
            }
        }
    }

    private void LeaveOwned(bool owned)
    {
        if (owned && _limits.MaxConcurrentConnections is not null)
        {
            Interlocked.Decrement(ref _owned);
        }
    }

    /// <summary>
    /// One connection's admission. <see cref="Authenticated"/> when its hello is accepted (it leaves the
    /// unauthenticated), <see cref="Upgrade"/> when it becomes a WebSocket on the gateway's own socket, and
    /// <see cref="Dispose"/> when it ends (or is handed to Kestrel); each at most once, in any order.
    /// </summary>
    internal sealed class Slot(GatewayAdmission gate, string? key, bool owned) : IDisposable
    {
        private int _authenticated;
        private int _upgraded;
        private int _disposed;

        /// <summary>False when Kestrel's upgraded-connection limit is reached: answer 503 and close.</summary>
        public bool Upgrade()
        {
            if (gate._limits.MaxConcurrentUpgradedConnections is not { } max)
            {
                return true;
            }

            if (Interlocked.Increment(ref gate._upgraded) > max)
            {
                Interlocked.Decrement(ref gate._upgraded);
                gate._metrics.GatewayRefused.WithLabels("max_upgraded").Inc();
                return false;
            }

            _upgraded = 1;
            return true;
        }

        /// <summary>Whether <see cref="Dispose"/> still has a Kestrel limit to give back.</summary>
        public bool HoldsLimits => (owned && gate._limits.MaxConcurrentConnections is not null) || Volatile.Read(ref _upgraded) == 1;

        public void Authenticated()
        {
            if (Interlocked.Exchange(ref _authenticated, 1) == 0)
            {
                Interlocked.Decrement(ref gate._unauthenticated);
                if (key is not null)
                {
                    gate.Leave(key);
                }
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            Authenticated();
            if (Interlocked.Exchange(ref _upgraded, 0) == 1)
            {
                Interlocked.Decrement(ref gate._upgraded);
            }

            gate.LeaveOwned(owned);
        }
    }
}
