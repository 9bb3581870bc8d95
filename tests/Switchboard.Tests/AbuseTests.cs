using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Switchboard.Client;

namespace Switchboard.Tests;

/// <summary>
/// Limits on sign-ups, logins, device links, password hashing and groups: what people without an account (or with
/// a fresh one) can do to the people who have one. Each server here has the limits on (the other tests' servers
/// turn them off, since they make hundreds of accounts from loopback).
/// </summary>
public sealed class AbuseTests
{
    private static Dictionary<string, string?> On(params (string Key, string Value)[] settings)
    {
        var all = new Dictionary<string, string?> { ["Switchboard:Abuse:Enabled"] = "true" };
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }

        return all;
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> PostAsync(TestServer server, string path, object body, string? forwardedFor = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        if (forwardedFor is not null)
        {
            request.Headers.Add("X-Forwarded-For", forwardedFor);
        }

        var response = await server.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone(), response);
    }

    private static Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> LoginAsync(TestServer server, string user, string password, string? forwardedFor = null) =>
        PostAsync(server, "/v1/devices", new { user, password, name = "guess" }, forwardedFor);

    private static void AssertRateLimited((HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response) answer)
    {
        Assert.Equal(HttpStatusCode.TooManyRequests, answer.Status);
        Assert.Equal("rate_limited", answer.Body.GetProperty("error").GetString());
        Assert.True(answer.Body.GetProperty("retry_after").GetInt64() > 0);
        Assert.True(answer.Response.Headers.RetryAfter?.Delta > TimeSpan.Zero);
    }

    [Fact]
    public async Task Wrong_passwords_from_one_address_are_refused_after_the_burst_even_with_the_right_one()
    {
        await using var server = await TestServer.StartAsync(On());
        var victim = await server.RegisterAsync();
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync(server, victim, "wrong password " + i)).Status);
        }

        AssertRateLimited(await LoginAsync(server, victim, "wrong password again"));
        AssertRateLimited(await LoginAsync(server, victim, "correct horse"));
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Contains("switchboard_abuse_refused_total{limit=\"login_failures_per_address\"} 2", metrics);
    }

    [Fact]
    public async Task Wrong_passwords_checked_at_the_same_time_cannot_overrun_the_bound()
    {
        await using var server = await TestServer.StartAsync(On());
        var victim = await server.RegisterAsync();
        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => LoginAsync(server, victim, "wrong password " + i)));
        Assert.All(answers, a => Assert.Contains(a.Status, new[] { HttpStatusCode.Unauthorized, HttpStatusCode.TooManyRequests }));
        Assert.InRange(answers.Count(a => a.Status == HttpStatusCode.Unauthorized), 1, 10);
    }

    [Fact]
    public async Task Failed_logins_against_one_account_from_many_addresses_hold_back_that_account_only()
    {
        await using var server = await TestServer.StartAsync(On(("Switchboard:TrustedProxies:0", "127.0.0.1"), ("Switchboard:TrustedProxies:1", "::1")));
        var victim = await server.RegisterAsync();
        var bystander = await server.RegisterAsync();
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync(server, victim, "wrong password", $"203.0.113.{i + 1}")).Status);
        }

        AssertRateLimited(await LoginAsync(server, victim, "correct horse", "198.51.100.7"));
        Assert.Equal(HttpStatusCode.Created, (await LoginAsync(server, bystander, "correct horse", "198.51.100.7")).Status);
    }

    [Fact]
    public async Task X_Forwarded_For_is_believed_only_from_a_trusted_proxy()
    {
        await using var server = await TestServer.StartAsync(On(("Switchboard:Abuse:RegistrationsPerAddress:Burst", "2")));
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, $"203.0.113.{i + 1}")).Status);
        }

        // A forged header from an untrusted peer does not make a new address.
        AssertRateLimited(await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "203.0.113.99"));
    }

    [Fact]
    public async Task Sign_ups_are_limited_per_address_and_a_trusted_proxy_keeps_its_clients_apart()
    {
        await using var server = await TestServer.StartAsync(On(("Switchboard:Abuse:RegistrationsPerAddress:Burst", "3"), ("Switchboard:TrustedProxies:0", "127.0.0.0/8"), ("Switchboard:TrustedProxies:1", "::1")));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "203.0.113.1")).Status);
        }

        AssertRateLimited(await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "203.0.113.1"));
        Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "203.0.113.2")).Status);
        // IPv6 addresses count per /64: another address in the same /64 is the same client.
        Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "2001:db8:1:2::1")).Status);
        Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "2001:db8:1:2::2")).Status);
        Assert.Equal(HttpStatusCode.Created, (await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "2001:db8:1:2:ffff::3")).Status);
        AssertRateLimited(await PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" }, "2001:db8:1:2:abcd::4"));
    }

    [Fact]
    public async Task Password_hashing_is_bounded_and_the_sdk_waits_out_a_short_retry_after()
    {
        // Costly hashes, one at a time, none waiting: concurrent sign-ups beyond the one being hashed are refused.
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Accounts:Argon2MemoryKiB"] = "65536",
            ["Switchboard:Accounts:Argon2Passes"] = "3",
            ["Switchboard:Abuse:HashConcurrency"] = "1",
            ["Switchboard:Abuse:HashQueue"] = "0",
        });
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => PostAsync(server, "/v1/accounts", new { user = TestServer.NewUser(), password = "correct horse" })));
        Assert.All(answers, a => Assert.Contains(a.Status, new[] { HttpStatusCode.Created, HttpStatusCode.TooManyRequests }));
        var refused = answers.Where(a => a.Status == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(refused);
        Assert.Contains(answers, a => a.Status == HttpStatusCode.Created);
        Assert.All(refused, a => Assert.Equal(1000, a.Body.GetProperty("retry_after").GetInt64()));
        Assert.Contains("switchboard_abuse_refused_total{limit=\"hashing\"}", await server.Http.GetStringAsync("/metrics"));

        // The SDK waits the second and tries again: all three sign-ups go through.
        var users = Enumerable.Range(0, 3).Select(_ => TestServer.NewUser()).ToList();
        await Task.WhenAll(users.Select(u => SwitchboardClient.RegisterAsync(server.Address, u, "correct horse")));
        foreach (var user in users)
        {
            Assert.Equal(HttpStatusCode.Created, (await LoginAsync(server, user, "correct horse")).Status);
        }
    }

    [Fact]
    public async Task A_long_retry_after_reaches_the_sdk_caller()
    {
        await using var server = await TestServer.StartAsync(On(("Switchboard:Abuse:RegistrationsPerAddress:Burst", "1")));
        await SwitchboardClient.RegisterAsync(server.Address, TestServer.NewUser(), "correct horse");
        var refused = await Assert.ThrowsAsync<SwitchboardException>(() => SwitchboardClient.RegisterAsync(server.Address, TestServer.NewUser(), "correct horse"));
        Assert.Equal("rate_limited", refused.Code);
        Assert.True(refused.RetryAfter > TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Group_creation_and_adds_are_limited_per_user_even_with_the_sign_up_limits_off()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Switchboard:Abuse:GroupCreatesPerUser:Burst"] = "2",
            ["Switchboard:Abuse:GroupAddsPerUser:Burst"] = "3",
        });
        await using var creator = await server.NewClientAsync();
        var others = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            others.Add(await server.RegisterAsync());
        }

        async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, object body)
        {
            using var request = server.Request(method, path, creator.Token);
            request.Content = JsonContent.Create(body);
            using var response = await server.Http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
        }

        var (status, group) = await SendAsync(HttpMethod.Post, "/v1/groups", new { name = "first", members = new[] { others[0], others[1] } });
        Assert.Equal(HttpStatusCode.Created, status);
        var conv = group.GetProperty("conv").GetString()!;

        // Two members added so far; two more would be four, past the burst of three.
        var (addStatus, addBody) = await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", new { users = new[] { others[2], others[3] } });
        Assert.Equal(HttpStatusCode.TooManyRequests, addStatus);
        Assert.Equal("rate_limited", addBody.GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, $"/v1/groups/{conv}/members", new { users = new[] { others[2] } })).Status);

        Assert.Equal(HttpStatusCode.Created, (await SendAsync(HttpMethod.Post, "/v1/groups", new { name = "second", members = Array.Empty<string>() })).Status);
        var (third, thirdBody) = await SendAsync(HttpMethod.Post, "/v1/groups", new { name = "third", members = Array.Empty<string>() });
        Assert.Equal(HttpStatusCode.TooManyRequests, third);
        Assert.True(thirdBody.GetProperty("retry_after").GetInt64() > 0);
    }
}
