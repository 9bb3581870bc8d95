using System.Net;

namespace Switchboard.Bench;

/// <summary>
/// Where a workload connects: the server's HTTP base URL, its WebSocket endpoint, and how many loopback source
/// addresses the sockets are spread over. One source address gives at most about 28,000 sockets to one server
/// port (the ephemeral port range); 127.0.0.1 … 127.0.0.N multiply that, for a server on this machine.
/// </summary>
internal sealed class BenchTarget
{
    public const int MaxSourceAddresses = 254;

    private readonly IPAddress[] _sources;

    private BenchTarget(Uri url, Uri webSocket, IPAddress[] sources)
    {
        Url = url;
        WebSocket = webSocket;
        _sources = sources;
    }

    public Uri Url { get; }

    public Uri WebSocket { get; }

    public int SourceAddresses => Math.Max(1, _sources.Length);

    /// <summary>Checks the URL and the source address count; null with a message for the user when they do not fit.</summary>
    public static BenchTarget? Create(string? url, int sourceAddresses, out string? error)
    {
        error = null;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
        {
            error = "--url must be an absolute http:// or https:// URL";
            return null;
        }

        if (sourceAddresses is < 1 or > MaxSourceAddresses)
        {
            error = $"--source-addresses must be between 1 and {MaxSourceAddresses}";
            return null;
        }

        var host = baseUrl.Host;
        var sources = Array.Empty<IPAddress>();
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
                error = "--source-addresses above 1 needs a server on an IPv4 loopback address (127.x.x.x or localhost)";
                return null;
            }

            sources = [.. Enumerable.Range(1, sourceAddresses).Select(i => new IPAddress(new byte[] { 127, 0, 0, (byte)i }))];
        }

        var webSocket = new UriBuilder(baseUrl) { Scheme = baseUrl.Scheme == "https" ? "wss" : "ws", Host = host, Path = "/v1/ws", Query = "", Fragment = "" }.Uri;
        return new BenchTarget(baseUrl, webSocket, sources);
    }

    /// <summary>An HTTP client for the API calls of a run (sign-ups, groups, metrics).</summary>
    public HttpClient CreateHttpClient(TimeSpan timeout) => new() { BaseAddress = Url, Timeout = timeout };

    /// <summary>The source address of socket number <paramref name="index"/>: round robin, or null for the kernel's choice.</summary>
    public IPAddress? LocalAddress(int index) => _sources.Length == 0 ? null : _sources[index % _sources.Length];

    /// <summary>Opens socket number <paramref name="index"/> of a run, authenticated and live.</summary>
    public Task<BenchConnection> ConnectAsync(int index, string token, Action<ReadOnlyMemory<byte>> onFrame, CancellationToken cancellationToken,
        int bufferSize = 256 * 1024, TimeSpan? timeout = null, Action? onReadEnd = null) =>
        BenchConnection.ConnectAsync(WebSocket, token, onFrame, cancellationToken, bufferSize, LocalAddress(index), timeout, onReadEnd);
}
