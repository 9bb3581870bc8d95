using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http.Features;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;

namespace Switchboard.Server.Http;

/// <summary>Reading bodies, answering errors and authenticating, the same way for every endpoint.</summary>
internal static class HttpHelpers
{
    public static IResult Error(int status, string code, string message) =>
        Results.Json(new ErrorBody(code, message), SwitchboardJsonContext.Default.ErrorBody, statusCode: status);

    /// <summary>429 <c>rate_limited</c>, with <c>retry_after</c> (ms) in the body and <c>Retry-After</c> (s) in the head.</summary>
    public static IResult RateLimited(HttpContext context, long retryAfterMs, string message)
    {
        context.Response.Headers.RetryAfter = Math.Max(1, (retryAfterMs + 999) / 1000).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Results.Json(new ErrorBody(ErrorCodes.RateLimited, message) { RetryAfter = retryAfterMs }, SwitchboardJsonContext.Default.ErrorBody, statusCode: 429);
    }

    /// <summary>The key the caller's address is limited by (the forwarded one when the peer is a trusted proxy).</summary>
    public static string AddressKey(HttpContext context) => Abuse.AbuseGuard.AddressKey(context.Connection.RemoteIpAddress);

    public static IResult Json<T>(T value, JsonTypeInfo<T> type, int status = 200) =>
        Results.Json(value, type, statusCode: status);

    /// <summary>Reads a JSON body; on failure returns the error to answer instead (400 invalid, 413 too_large).</summary>
    public static async Task<(T? Value, IResult? Error)> ReadAsync<T>(HttpContext context, JsonTypeInfo<T> type, int maxBytes)
        where T : class
    {
        if (context.Request.ContentLength > maxBytes)
        {
            return (null, Error(413, ErrorCodes.TooLarge, $"body over {maxBytes} bytes"));
        }

        var limit = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (limit is { IsReadOnly: false })
        {
            limit.MaxRequestBodySize = maxBytes;
        }

        try
        {
            var value = await JsonSerializer.DeserializeAsync(context.Request.Body, type, context.RequestAborted);
            return value is null ? (null, Error(400, ErrorCodes.Invalid, "body must be a JSON object")) : (value, null);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or NotSupportedException)
        {
            return (null, Error(400, ErrorCodes.Invalid, $"body is not valid JSON for this call: {FrameReader.Describe(ex)}"));
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == 413)
        {
            return (null, Error(413, ErrorCodes.TooLarge, $"body over {maxBytes} bytes"));
        }
    }

    public static async ValueTask<DeviceIdentity?> AuthenticateAsync(HttpContext context, AccountService accounts)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) || header.Length == prefix.Length)
        {
            return null;
        }

        return await accounts.AuthenticateAsync(header[prefix.Length..].Trim(), context.RequestAborted);
    }

    /// <summary>Base64url (padding tolerated) to bytes; null when absent or not base64url.</summary>
    public static byte[]? FromBase64Url(string? text)
    {
        try
        {
            return text is null ? null : System.Buffers.Text.Base64Url.DecodeFromChars(text.TrimEnd('='));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    public static IResult Unauthorized() => Error(401, ErrorCodes.Unauthorized, "missing, bad or revoked token");
}
