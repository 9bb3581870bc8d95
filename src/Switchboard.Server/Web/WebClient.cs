using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;

namespace Switchboard.Server.Web;

/// <summary>The browser client's files at <c>/</c>, under a strict Content Security Policy, and the origin check of the API.</summary>
internal static class WebClient
{
    /// <summary>
    /// Scripts, styles and connections from this origin only; no inline script or style, no plugins, not framed.
    /// WebSocket URLs of the same host count as this origin.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    /// <summary>Where the files are: <c>web/</c> beside the server's assembly (copied there by the build).</summary>
    public static string Root => Path.Combine(AppContext.BaseDirectory, "web");

    /// <summary>Refuses API calls and upgrades from pages of origins that may not use this server.</summary>
    public static void UseOriginCheck(this WebApplication app)
    {
        var policy = app.Services.GetRequiredService<OriginPolicy>();
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/v1") && !policy.Allows(context.Request.Headers.Origin, context.Request.Headers.Host))
            {
                await Results.Json(new ErrorBody(ErrorCodes.Forbidden, OriginPolicy.RefusedMessage), SwitchboardJsonContext.Default.ErrorBody, statusCode: 403).ExecuteAsync(context);
                return;
            }

            await next(context);
        });
    }

    /// <summary>Serves <c>web/</c> at <c>/</c> (index.html for <c>/</c>) with the policy headers, if enabled and present.</summary>
    public static void MapWebClient(this WebApplication app)
    {
        if (!app.Services.GetRequiredService<IOptions<WebOptions>>().Value.Enabled || !Directory.Exists(Root))
        {
            return;
        }

        var files = new PhysicalFileProvider(Root);
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                headers.ContentSecurityPolicy = ContentSecurityPolicy;
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                headers["Cross-Origin-Opener-Policy"] = "same-origin";
                headers.CacheControl = "no-cache"; // revalidated: a new server version brings its own client
            },
        });
    }
}
