using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Bench;

/// <summary>
/// Creates throwaway accounts and device tokens for a run, each on the node its socket will use (with one server,
/// all on it).
/// </summary>
internal sealed class BenchAccounts(NodeClients nodes)
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..8];
    private const string Password = "bench password";

    /// <summary>Account <paramref name="index"/> of <paramref name="role"/>, signed up and logged in on the node of socket <paramref name="index"/>.</summary>
    public Task<(string User, string Token)> CreateAsync(string role, int index, CancellationToken cancellationToken) =>
        CreateAsync(role, index, index, cancellationToken);

    /// <summary>Account <paramref name="index"/> of <paramref name="role"/>, signed up and logged in on the node of socket <paramref name="socket"/>.</summary>
    public async Task<(string User, string Token)> CreateAsync(string role, int index, int socket, CancellationToken cancellationToken)
    {
        var http = nodes.Of(socket);
        var user = $"b{_run}{role}{index}";
        (await PostAsync(http, "/v1/accounts", new { user, password = Password }, cancellationToken)).Dispose();
        using var linked = await PostAsync(http, "/v1/devices", new { user, password = Password, name = "bench" }, cancellationToken);
        var body = await linked.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
        return (user, body.GetProperty("token").GetString()!);
    }

    /// <summary>Longest <c>retry_after</c> worth waiting for (the server's password-hashing queue).</summary>
    private const long MaxWaitMs = 5_000;

    /// <summary>
    /// A sign-up or link, honouring 429 <c>retry_after</c> when the wait is short (the hashing queue); a long one
    /// means the server limits sign-ups per address, which a load test from one machine cannot live with.
    /// </summary>
    public static async Task<HttpResponseMessage> PostAsync<T>(HttpClient http, string path, T body, CancellationToken cancellationToken)
    {
        while (true)
        {
            var response = await http.PostAsJsonAsync(path, body, cancellationToken);
            if (response.IsSuccessStatusCode)
            {
                return response;
            }

            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            response.Dispose();
            if ((int)response.StatusCode == 429 && RetryAfter(text) is { } wait and <= MaxWaitMs)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(wait + Random.Shared.Next(50)), cancellationToken);
                continue;
            }

            var hint = (int)response.StatusCode == 429
                ? " (the server limits sign-ups and logins per address: start it with Switchboard__Abuse__Enabled=false for load tests)"
                : "";
            throw new InvalidOperationException($"POST {path}: {(int)response.StatusCode} {text}{hint}");
        }
    }

    private static long? RetryAfter(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            return doc.RootElement.TryGetProperty("retry_after", out var value) && value.TryGetInt64(out var ms) ? ms : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
