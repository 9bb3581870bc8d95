using System.Net;

namespace Switchboard.Bench;

/// <summary>
/// Where a workload connects: one server, or the nodes of a cluster (their HTTP base URLs and WebSocket
/// endpoints), and how many loopback source addresses the sockets are spread over. With several nodes, user (or
/// socket) i signs up, logs in and connects on node i mod N, as a load balancer that pins each user to a node
/// would place them, so most messages cross nodes. One source address gives at most about 28,000 sockets to one
/// server port (the ephemeral port range); 127.0.0.1 … 127.0.0.N multiply that, for a server on this machine.
/// </summary>
internal sealed class BenchTarget
{
    public const int MaxSourceAddresses = 254;

    private readonly Uri[] _urls;
    private readonly Uri[] _webSockets;
    private readonly IPAddress[] _sources;

    private BenchTarget(Uri[] urls, Uri[] webSockets, IPAddress[] sources)
    {
        _urls = urls;
        _webSockets = webSockets;
        _sources = sources;
    }

    /// <summary>The first node's base URL: where the calls of a run that belong to no user go.</summary>
    public Uri Url => _urls[0];

    /// <summary>The first node's WebSocket endpoint.</summary>
    public Uri WebSocket => _webSockets[0];

    /// <summary>Server nodes the users are spread over; 1 for a single server.</summary>
    public int Nodes => _urls.Length;

    public int SourceAddresses => Math.Max(1, _sources.Length);

    /// <summary>The node of user or socket number <paramref name="index"/>: round robin.</summary>
    public int NodeOf(int index) => index % _urls.Length;

    /// <summary>The base URL of the node of user or socket number <paramref name="index"/>.</summary>
    public Uri UrlOf(int index) => _urls[NodeOf(index)];

    /// <summary>The WebSocket endpoint of the node of user or socket number <paramref name="index"/>.</summary>
    public Uri WebSocketOf(int index) => _webSockets[NodeOf(index)];

    /// <summary>
    /// Checks the URLs (at least one, each absolute http or https) and the source address count; null with a
    /// message for the user when they do not fit.
    /// </summary>
    public static BenchTarget? Create(IReadOnlyList<string> urls, int sourceAddresses, out string? error)
    {
        error = null;
        if (urls.Count == 0)
        {
            error = "no server URL: give --url or --nodes-file";
            return null;
        }

        if (sourceAddresses is < 1 or > MaxSourceAddresses)
        {
            error = $"--source-addresses must be between 1 and {MaxSourceAddresses}";
            return null;
        }

        var bases = new Uri[urls.Count];
        var webSockets = new Uri[urls.Count];
        for (var i = 0; i < urls.Count; i++)
        {
            if (!Uri.TryCreate(urls[i], UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
            {
                error = urls.Count == 1
                    ? "--url must be an absolute http:// or https:// URL"
                    : $"'{urls[i]}' is not an absolute http:// or https:// URL (every node's URL must be)";
                return null;
            }

            var host = baseUrl.Host;
            if (sourceAddresses > 1)
            {
                // Only an IPv4 loopback server can be reached from every 127.0.0.x; "localhost" is pinned to 127.0.0.1
                // so it cannot resolve to ::1, which an IPv4 source cannot reach.
                if (baseUrl.IsLoopback && host == "localhost")
                {
                    host = "127.0.0.1";
                }

                if (!IPAddress.TryParse(host, out var address) || !IPAddress.IsLoopback(address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
                {
                    error = urls.Count == 1
                        ? "--source-addresses above 1 needs a server on an IPv4 loopback address (127.x.x.x or localhost)"
                        : "--source-addresses above 1 needs every node on an IPv4 loopback address (127.x.x.x or localhost)";
                    return null;
                }
            }

            bases[i] = baseUrl;
            webSockets[i] = new UriBuilder(baseUrl) { Scheme = baseUrl.Scheme == "https" ? "wss" : "ws", Host = host, Path = "/v1/ws", Query = "", Fragment = "" }.Uri;
        }

        var sources = sourceAddresses > 1
            ? [.. Enumerable.Range(1, sourceAddresses).Select(i => new IPAddress(new byte[] { 127, 0, 0, (byte)i }))]
            : Array.Empty<IPAddress>();
        return new BenchTarget(bases, webSockets, sources);
    }

    /// <summary>HTTP clients for the API calls of a run (sign-ups, groups, metrics), one per node.</summary>
    public NodeClients CreateHttpClients(TimeSpan timeout)
    {
        var clients = new HttpClient[_urls.Length];
        for (var i = 0; i < clients.Length; i++)
        {
            clients[i] = new HttpClient { BaseAddress = _urls[i], Timeout = timeout };
        }

        return new NodeClients(this, clients);
    }

    /// <summary>The source address of socket number <paramref name="index"/>: round robin, or null for the kernel's choice.</summary>
    public IPAddress? LocalAddress(int index) => _sources.Length == 0 ? null : _sources[index % _sources.Length];

    /// <summary>Opens socket number <paramref name="index"/> of a run on its node, authenticated and live.</summary>
    public Task<BenchConnection> ConnectAsync(int index, string token, Action<ReadOnlyMemory<byte>> onFrame, CancellationToken cancellationToken,
        int bufferSize = 256 * 1024, TimeSpan? timeout = null, Action? onReadEnd = null) =>
        BenchConnection.ConnectAsync(WebSocketOf(index), token, onFrame, cancellationToken, bufferSize, LocalAddress(index), timeout, onReadEnd);

    /// <summary>Adds what a report needs to say about a cluster target (its node count); nothing for one server, so single-server reports keep their shape.</summary>
    public void AddTo(Dictionary<string, object?> report)
    {
        if (_urls.Length > 1)
        {
            report["nodes"] = _urls.Length;
        }
    }
}

/// <summary>
/// One HTTP client per node of a target: user i's sign-up and login go to the node its socket will use, and the
/// server's metrics can be read from every node and added up.
/// </summary>
internal sealed class NodeClients(BenchTarget target, HttpClient[] clients) : IDisposable
{
    /// <summary>The first node's client: for calls of a run that belong to no user.</summary>
    public HttpClient First => clients[0];

    /// <summary>Every node's client, in node order.</summary>
    public IReadOnlyList<HttpClient> All => clients;

    /// <summary>The client of the node of user or socket number <paramref name="index"/>.</summary>
    public HttpClient Of(int index) => clients[target.NodeOf(index)];

    public void Dispose()
    {
        foreach (var client in clients)
        {
            client.Dispose();
        }
    }
}
