using System.Net.Http.Json;
using System.Text.Json;

namespace Switchboard.Cli.Bench;

/// <summary>Creates throwaway accounts and device tokens for a run.</summary>
internal sealed class BenchAccounts(HttpClient http)
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..8];
    private const string Password = "bench password";

    public async Task<(string User, string Token)> CreateAsync(string role, int index, CancellationToken cancellationToken)
    {
        var user = $"b{_run}{role}{index}";
        using (var created = await http.PostAsJsonAsync("/v1/accounts", new { user, password = Password }, cancellationToken))
        {
            if (!created.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"register {user}: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync(cancellationToken)}");
            }
        }

        using var linked = await http.PostAsJsonAsync("/v1/devices", new { user, password = Password, name = "bench" }, cancellationToken);
        if (!linked.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"link {user}: {(int)linked.StatusCode}");
        }

        var body = await linked.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
        return (user, body.GetProperty("token").GetString()!);
    }
}
