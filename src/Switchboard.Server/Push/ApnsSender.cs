using System.Buffers.Text;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Server.Push;

/// <summary>
/// Apple Push Notification service over HTTP/2, with a provider token: a JWT signed ES256 with the team's
/// <c>.p8</c> key (kid = key id, iss = team id), made again every 40 minutes (Apple accepts them for an hour and
/// refuses one renewed more often than every 20). One request per push to <c>/3/device/{token}</c>: an alert that
/// says only that there is a new message (the app's notification extension fetches it), the unread badge, the
/// conversation as <c>apns-collapse-id</c> and thread.
/// </summary>
internal sealed class ApnsSender(ApnsOptions options, HttpClient http, TimeProvider time)
{
    private static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(40);
    private readonly Lazy<ECDsa> _key = new(() =>
    {
        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(options.KeyFile!));
        return key;
    });

    private readonly Lock _tokenLock = new();
    private string? _token;
    private DateTimeOffset _madeAt;

    public async Task<PushResult> SendAsync(string deviceToken, string topic, bool sandbox, PushPayload payload, string collapseId, CancellationToken cancellationToken)
    {
        var baseUrl = (sandbox ? options.SandboxBaseUrl : options.BaseUrl).TrimEnd('/');
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{baseUrl}/3/device/{Uri.EscapeDataString(deviceToken)}")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(Body(payload)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("bearer", ProviderToken());
        request.Headers.Add("apns-topic", topic);
        request.Headers.Add("apns-push-type", "alert");
        request.Headers.Add("apns-priority", "10");
        request.Headers.Add("apns-collapse-id", collapseId);
        using var response = await http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return new(PushOutcome.Accepted, $"apns: {(int)response.StatusCode}");
        }

        if (response.StatusCode == HttpStatusCode.TooManyRequests || (int)response.StatusCode >= 500)
        {
            return new(PushOutcome.RetryLater, $"apns: {(int)response.StatusCode}", FcmSender.RetryAfter(response));
        }

        // 410 Unregistered, or 400 BadDeviceToken: the token is gone for good.
        return response.StatusCode == HttpStatusCode.Gone || body.Contains("BadDeviceToken", StringComparison.Ordinal) || body.Contains("Unregistered", StringComparison.Ordinal)
            ? new(PushOutcome.Gone, $"apns: {(int)response.StatusCode} {body}")
            : new(PushOutcome.Failed, $"apns: {(int)response.StatusCode} {body[..Math.Min(body.Length, 200)]}");
    }

    private static byte[] Body(PushPayload payload)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("aps");
            w.WriteStartObject("alert");
            w.WriteString("body", payload.Body ?? "New message");
            w.WriteEndObject();
            w.WriteNumber("badge", payload.Unread);
            w.WriteNumber("mutable-content", 1); // the app's extension may fetch and decrypt the message
            w.WriteString("thread-id", payload.Conv);
            w.WriteEndObject();
            w.WriteString("conv", payload.Conv);
            w.WriteNumber("seq", payload.Seq);
            w.WriteString("from", payload.From);
            w.WriteString("kind", payload.Kind);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private string ProviderToken()
    {
        lock (_tokenLock)
        {
            var now = time.GetUtcNow();
            if (_token is { } cached && now - _madeAt < TokenLifetime)
            {
                return cached;
            }

            var header = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{{\"alg\":\"ES256\",\"kid\":\"{options.KeyId}\"}}"));
            var claims = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{{\"iss\":\"{options.TeamId}\",\"iat\":{now.ToUnixTimeSeconds()}}}"));
            var unsigned = header + "." + claims;
            var signature = _key.Value.SignData(Encoding.ASCII.GetBytes(unsigned), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            _token = unsigned + "." + Base64Url.EncodeToString(signature);
            _madeAt = now;
            return _token;
        }
    }
}

/// <summary>Apple Push Notification service settings, <c>Switchboard:Push:Apns</c>.</summary>
public sealed class ApnsOptions
{
    /// <summary>The <c>.p8</c> signing key from the Apple developer account. Unset: APNs registrations are refused.</summary>
    public string? KeyFile { get; set; }

    /// <summary>The key's id (10 characters).</summary>
    public string? KeyId { get; set; }

    /// <summary>The developer team id (10 characters).</summary>
    public string? TeamId { get; set; }

    public string BaseUrl { get; set; } = "https://api.push.apple.com";

    /// <summary>Where registrations with <c>sandbox: true</c> (development builds) are pushed.</summary>
    public string SandboxBaseUrl { get; set; } = "https://api.sandbox.push.apple.com";

    internal bool Configured => KeyFile is not null && KeyId is not null && TeamId is not null;
}
