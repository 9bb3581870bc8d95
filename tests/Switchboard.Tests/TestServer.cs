using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Switchboard.Server.Hosting;

namespace Switchboard.Tests;

/// <summary>
/// The real server on Kestrel, on a free loopback port, with its own temporary data directory. Settings are
/// given as configuration keys, exactly as an operator would.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    private static int _users;
    private readonly WebApplication _app;

    private TestServer(WebApplication app, string dataDir, Uri address)
    {
        _app = app;
        DataDir = dataDir;
        Address = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
    }

    public string DataDir { get; }
    public Uri Address { get; }

    /// <summary>
    /// The files under <see cref="DataDir"/> (database, write-ahead log, logs) that hold <paramref name="text"/> as
    /// UTF-8, read while the server runs: the canary scan of end-to-end encryption.
    /// </summary>
    public List<string> FilesHolding(string text)
    {
        var needle = System.Text.Encoding.UTF8.GetBytes(text);
        return [.. Directory.EnumerateFiles(DataDir, "*", SearchOption.AllDirectories).Where(file =>
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            return copy.GetBuffer().AsSpan(0, (int)copy.Length).IndexOf(needle) >= 0;
        })];
    }
    public HttpClient Http { get; }

    public IServiceProvider Services => _app.Services;
    public Uri WebSocketUri => new($"ws://{Address.Authority}/v1/ws");

    public static async Task<TestServer> StartAsync(IDictionary<string, string?>? settings = null, string? dataDir = null, Action<WebApplicationBuilder>? configure = null)
    {
        dataDir ??= Path.Combine(Path.GetTempPath(), "switchboard-test-" + Guid.NewGuid().ToString("N"));
        var args = new List<string> { "--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", dataDir, "--Logging:LogLevel:Default", "Warning" };
        // Cheaper password hashing keeps hundreds of test accounts fast; the default is covered by its own test.
        // Tests make hundreds of accounts from loopback: the per-address limits are off unless a test turns them on.
        var all = new Dictionary<string, string?> { ["Switchboard:Accounts:Argon2MemoryKiB"] = "64", ["Switchboard:Accounts:Argon2Passes"] = "1", ["Switchboard:Abuse:Enabled"] = "false" };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            all[k] = v;
        }

        foreach (var (k, v) in all)
        {
            args.Add("--" + k);
            args.Add(v ?? "");
        }

        var app = SwitchboardHost.Build([.. args], configure);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TestServer(app, dataDir, new Uri(address));
    }

    /// <summary>A handle unique in this test run.</summary>
    public static string NewUser(string prefix = "u") =>
        $"{prefix}{Interlocked.Increment(ref _users)}x{Guid.NewGuid().ToString("N")[..8]}";

    public async Task<string> RegisterAsync(string? user = null, string password = "correct horse")
    {
        user ??= NewUser();
        var response = await Http.PostAsJsonAsync("/v1/accounts", new { user, password });
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        return user;
    }

    /// <summary>Links a device and returns its token.</summary>
    public async Task<(int Device, string Token)> LinkAsync(string user, string password = "correct horse", string name = "test")
    {
        var response = await Http.PostAsJsonAsync("/v1/devices", new { user, password, name });
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (body.GetProperty("device").GetInt32(), body.GetProperty("token").GetString()!);
    }

    /// <summary>Registers a user, links one device and connects it (welcome and live received).</summary>
    public async Task<TestClient> NewClientAsync(string? user = null)
    {
        user ??= await RegisterAsync();
        var (device, token) = await LinkAsync(user);
        var client = await TestClient.ConnectAsync(this, user, device, token);
        await client.ExpectAsync("live");
        return client;
    }

    /// <summary>Links another device of an existing user and connects it.</summary>
    public async Task<TestClient> NewDeviceAsync(string user)
    {
        var (device, token) = await LinkAsync(user);
        var client = await TestClient.ConnectAsync(this, user, device, token);
        await client.ExpectAsync("live");
        return client;
    }

    public HttpRequestMessage Request(HttpMethod method, string path, string token)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    /// <summary>Any call with a token and an optional JSON body; the status and the parsed answer.</summary>
    public async Task<(System.Net.HttpStatusCode Status, JsonElement Body)> CallAsync(HttpMethod method, string path, string token, object? body = null)
    {
        using var request = Request(method, path, token);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }

        using var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public async Task<(System.Net.HttpStatusCode Status, JsonElement Body)> GetAsync(string path, string token)
    {
        using var response = await Http.SendAsync(Request(HttpMethod.Get, path, token));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private bool _stopped;

    /// <summary>Stops the server but keeps its data directory, so a new server can start on it.</summary>
    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        Http.Dispose();
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            await _app.StopAsync(cts.Token);
        }

        await _app.DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        try
        {
            Directory.Delete(DataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>One server shared by the tests of a class that need no special settings.</summary>
/// <summary>A running server for a test class: one embedded process, or one node of a cluster.</summary>
public interface IServerFixture
{
    TestServer Server { get; }
}

public sealed class ServerFixture : IAsyncLifetime, IServerFixture
{
    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
