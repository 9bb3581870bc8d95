namespace Switchboard.Server.Web;

/// <summary>The browser client served at <c>/</c>, and which pages may call the API (<c>Switchboard:Web</c>).</summary>
public sealed class WebOptions
{
    /// <summary>Serve the browser client (the files under <c>web/</c>) at <c>/</c>.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Origins (<c>https://chat.example.com</c>) whose pages may open the WebSocket and call the HTTP API, besides
    /// the server's own (always allowed). <c>*</c> allows every origin. A request without <c>Origin</c> (a native
    /// client, curl) is not a page and is always allowed.
    /// </summary>
    public string[] AllowedOrigins { get; set; } = [];

    internal void Validate()
    {
        foreach (var origin in AllowedOrigins)
        {
            if (origin != "*" && (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.AbsolutePath != "/" || !string.IsNullOrEmpty(uri.Query)))
            {
                throw new ArgumentException($"Switchboard:Web:AllowedOrigins: '{origin}' is not an origin (scheme://host[:port], no path), nor *");
            }
        }
    }
}
