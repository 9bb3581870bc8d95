namespace Switchboard.Server.Hosting;

/// <summary>Process-wide settings, bound from <c>Switchboard</c> (env <c>Switchboard__*</c>).</summary>
public sealed class ServerOptions
{
    /// <summary>Where the embedded store keeps its files. Relative paths are taken from the working directory.</summary>
    public string DataDir { get; set; } = "./data";

    /// <summary>Node number baked into ids (0–1023); unique per node in a cluster.</summary>
    public int NodeId { get; set; }

    /// <summary>
    /// After a burst that allocated at least this many MiB (sign-ups, a reconnect storm) and once the process has
    /// gone quiet, memory is given back to the system: a full compacting collection that decommits what the managed
    /// heap no longer uses, and a trim of the native heap. 0: never.
    /// </summary>
    public int IdleTrimAfterMegabytes { get; set; } = 32;

    /// <summary>
    /// Reverse proxies (addresses, or networks as <c>10.0.0.0/8</c>) whose <c>X-Forwarded-For</c> and
    /// <c>X-Forwarded-Proto</c> are believed. Empty: none, every client is its peer's address.
    /// </summary>
    public string[] TrustedProxies { get; set; } = [];

    internal IEnumerable<System.Net.IPNetwork> TrustedNetworks() => TrustedProxies.Select(p =>
        System.Net.IPNetwork.TryParse(p, out var network) ? network
        : System.Net.IPAddress.TryParse(p, out var address) ? new System.Net.IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)
        : throw new InvalidOperationException($"Switchboard:TrustedProxies: '{p}' is neither an address nor a network (a.b.c.d/n)."));

    internal void Validate()
    {
        _ = TrustedNetworks().ToList();

        if (string.IsNullOrWhiteSpace(DataDir))
        {
            throw new InvalidOperationException("Switchboard:DataDir must name a directory.");
        }

        if (IdleTrimAfterMegabytes is < 0 or > 1_048_576)
        {
            throw new InvalidOperationException("Switchboard:IdleTrimAfterMegabytes must be between 0 and 1048576.");
        }

        if (NodeId is < 0 or > 1023)
        {
            throw new InvalidOperationException("Switchboard:NodeId must be between 0 and 1023.");
        }
    }
}
