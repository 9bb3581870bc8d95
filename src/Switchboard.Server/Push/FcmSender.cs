using System.Buffers.Text;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Server.Push;

/// <summary>How a push service answered one push; <see cref="RetryAfter"/> with <see cref="PushOutcome.RetryLater"/>.</summary>
internal readonly record struct PushResult(PushOutcome Outcome, string Detail, TimeSpan RetryAfter = default);

/// <summary>What a push service made of one push.</summary>
internal enum PushOutcome
{
    Accepted,

    /// <summary>The registration is gone for good (Web Push 404/410, FCM UNREGISTERED, APNs 410): forget it.</summary>
    Gone,

    Failed,

    /// <summary>Throttled or the service is down for a moment (429, 5xx): try again after the wait it asked for.</summary>
    RetryLater,
}

/// <summary>
/// Firebase Cloud Messaging, HTTP v1: an OAuth2 access token got by exchanging a JWT signed with the service
/// account's key (RS256, RFC 7523), cached until shortly before it expires; then one <c>messages:send</c> per push, a
/// data message (the app wakes up and syncs) with the conversation as its collapse key.
/// </summary>
internal sealed class FcmSender(FcmOptions options, HttpClient http, TimeProvider time)
{
    private readonly Lazy<ServiceAccount> _account = new(() => ServiceAccount.Load(options.ServiceAccountFile!));
    private readonly SemaphoreSlim _tokenGate = new(1, 1);
    private string? _accessToken;
    private DateTimeOffset _expires;

    public async Task<PushResult> SendAsync(string deviceToken, PushPayload payload, string collapseKey, CancellationToken cancellationToken)
    {
        var account = _account.Value;
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{options.BaseUrl.TrimEnd('/')}/v1/projects/{account.ProjectId}/messages:send")
        {
            Content = new ByteArrayContent(Message(deviceToken, payload, collapseKey)) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } },
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", await AccessTokenAsync(account, cancellationToken));
        using var response = await http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return new(PushOutcome.Accepted, $"fcm: {(int)response.StatusCode}");
        }

        if (response.StatusCode == HttpStatusCode.TooManyRequests || (int)response.StatusCode >= 500)
        {
            return new(PushOutcome.RetryLater, $"fcm: {(int)response.StatusCode}", RetryAfter(response));
        }

        // A token the app no longer has: 404 NOT_FOUND with UNREGISTERED (or 400 for a token that never was).
        return response.StatusCode == HttpStatusCode.NotFound || body.Contains("UNREGISTERED", StringComparison.Ordinal)
            ? new(PushOutcome.Gone, $"fcm: {(int)response.StatusCode} UNREGISTERED")
            : new(PushOutcome.Failed, $"fcm: {(int)response.StatusCode} {body[..Math.Min(body.Length, 200)]}");
    }

    /// <summary>The wait a 429 or 503 asks for (<c>Retry-After</c>, seconds or a date), else 5 s; at most 10 minutes.</summary>
    internal static TimeSpan RetryAfter(HttpResponseMessage response)
    {
        var after = response.Headers.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - DateTimeOffset.UtcNow,
            _ => TimeSpan.FromSeconds(5),
        };
        return TimeSpan.FromTicks(Math.Clamp(after.Ticks, TimeSpan.FromSeconds(1).Ticks, TimeSpan.FromMinutes(10).Ticks));
    }

    private static byte[] Message(string deviceToken, PushPayload payload, string collapseKey)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("message");
            w.WriteString("token", deviceToken);
            w.WriteStartObject("data"); // FCM data values are strings
            w.WriteString("conv", payload.Conv);
            w.WriteString("seq", payload.Seq.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("from", payload.From);
            w.WriteString("kind", payload.Kind);
            w.WriteString("unread", payload.Unread.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (payload.Body is { } text)
            {
                w.WriteString("body", text);
            }

            w.WriteEndObject();
            w.WriteStartObject("android");
            w.WriteString("collapse_key", collapseKey);
            w.WriteString("priority", "HIGH");
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private async Task<string> AccessTokenAsync(ServiceAccount account, CancellationToken cancellationToken)
    {
        await _tokenGate.WaitAsync(cancellationToken);
        try
        {
            var now = time.GetUtcNow();
            if (_accessToken is { } cached && now < _expires)
            {
                return cached;
            }

            var assertion = account.SignedJwt(now);
            using var response = await http.PostAsync(account.TokenUri, new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = "urn:ietf:params:oauth:grant-type:jwt-bearer",
                ["assertion"] = assertion,
            }), cancellationToken);
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
            _accessToken = json.RootElement.GetProperty("access_token").GetString()!;
            var lifetime = json.RootElement.TryGetProperty("expires_in", out var seconds) ? seconds.GetInt32() : 3600;
            _expires = now.AddSeconds(Math.Max(60, lifetime - 60)); // renewed a minute early
            return _accessToken;
        }
        finally
        {
            _tokenGate.Release();
        }
    }

    /// <summary>The fields of a Google service-account key file that the exchange needs.</summary>
    private sealed record ServiceAccount(string ClientEmail, string PrivateKeyPem, string TokenUri, string ProjectId)
    {
        public static ServiceAccount Load(string path)
        {
            using var json = JsonDocument.Parse(File.ReadAllText(path));
            var root = json.RootElement;
            return new ServiceAccount(root.GetProperty("client_email").GetString()!, root.GetProperty("private_key").GetString()!,
                root.TryGetProperty("token_uri", out var uri) ? uri.GetString()! : "https://oauth2.googleapis.com/token", root.GetProperty("project_id").GetString()!);
        }

        public string SignedJwt(DateTimeOffset now)
        {
            var header = Base64Url.EncodeToString("{\"alg\":\"RS256\",\"typ\":\"JWT\"}"u8);
            var claims = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
            {
                ["iss"] = ClientEmail,
                ["scope"] = "https://www.googleapis.com/auth/firebase.messaging",
                ["aud"] = TokenUri,
                ["iat"] = now.ToUnixTimeSeconds(),
                ["exp"] = now.AddHours(1).ToUnixTimeSeconds(),
            }, JwtContext.Default.DictionaryStringObject);
            var unsigned = header + "." + Base64Url.EncodeToString(claims);
            using var rsa = RSA.Create();
            rsa.ImportFromPem(PrivateKeyPem);
            return unsigned + "." + Base64Url.EncodeToString(rsa.SignData(Encoding.ASCII.GetBytes(unsigned), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
        }
    }
}

/// <summary>Firebase Cloud Messaging settings, <c>Switchboard:Push:Fcm</c>.</summary>
public sealed class FcmOptions
{
    /// <summary>The service account's JSON key file (from the Firebase console). Unset: FCM registrations are refused.</summary>
    public string? ServiceAccountFile { get; set; }

    /// <summary>Where <c>messages:send</c> goes.</summary>
    public string BaseUrl { get; set; } = "https://fcm.googleapis.com";
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class JwtContext : System.Text.Json.Serialization.JsonSerializerContext;
