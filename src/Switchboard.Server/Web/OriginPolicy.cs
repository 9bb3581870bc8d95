using Microsoft.Extensions.Options;

namespace Switchboard.Server.Web;

/// <summary>
/// Whether a page of an origin may use this server: its own origin (the <c>Origin</c> names the host and port the
/// request was sent to), the configured <see cref="WebOptions.AllowedOrigins"/>, or any request that names no origin
/// (not a page). Applied to the WebSocket upgrade on both gateway paths and to the HTTP API, so a page elsewhere
/// cannot act with a user's token or ride their cookies-free session.
/// </summary>
internal sealed class OriginPolicy
{
    private readonly HashSet<string> _allowed;
    private readonly bool _any;

    public OriginPolicy(IOptions<WebOptions> options)
    {
        _any = options.Value.AllowedOrigins.Contains("*");
        _allowed = [.. options.Value.AllowedOrigins.Where(o => o != "*").Select(o => Normalize(o) ?? o)];
    }

    /// <summary>Whether a request from <paramref name="origin"/> to <paramref name="host"/> (its Host header) is allowed.</summary>
    public bool Allows(string? origin, string? host)
    {
        if (string.IsNullOrEmpty(origin))
        {
            return true; // not a page
        }

        if (_any)
        {
            return true;
        }

        if (Normalize(origin) is not { } normalized)
        {
            return false; // "null" (a sandboxed or file page) and anything unparsable
        }

        if (_allowed.Contains(normalized))
        {
            return true;
        }

        // Same origin: the page came from the host and port it now calls.
        var authority = new Uri(normalized).Authority;
        return host is not null && string.Equals(Authority(host, new Uri(normalized).Scheme), authority, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>scheme://host[:port] in lower case, default ports left out; null when it is no http(s) origin.</summary>
    private static string? Normalize(string origin) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/"
            ? $"{uri.Scheme}://{uri.Authority}".ToLowerInvariant()
            : null;

    /// <summary>A Host header as an authority with the scheme's default port left out.</summary>
    private static string Authority(string host, string scheme) =>
        Uri.TryCreate($"{scheme}://{host}/", UriKind.Absolute, out var uri) ? uri.Authority : host;

    public const string RefusedMessage = "this page's origin may not use this server (Switchboard:Web:AllowedOrigins)";
}
