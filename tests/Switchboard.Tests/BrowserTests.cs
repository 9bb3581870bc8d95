using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Switchboard.Tests;

/// <summary>
/// The browser client in real headless Chromium (Debian's, driven by npm playwright-core through
/// <c>tests/browser/run.mjs</c>), by the page's accessible names, against a real server. The test command installs
/// both (<c>scripts/browser.sh install</c>); without them these tests fail and say what to run.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class BrowserTests
{
    private static string Root => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));

    private static string Script => Path.Combine(Root, "tests", "browser", "run.mjs");

    private static void RequireBrowser()
    {
        Assert.True(File.Exists("/usr/bin/chromium") && Directory.Exists(Path.Combine(Root, "tests", "browser", "node_modules", "playwright-core")),
            "Chromium or playwright-core is missing: run `bash scripts/browser.sh install` (the test command does)");
    }

    /// <summary>Runs one scenario against <paramref name="url"/>; <paramref name="onLine"/> sees each line as it comes.</summary>
    private static async Task<string> RunAsync(string scenario, Uri url, Func<string, Task>? onLine = null, Dictionary<string, string>? environment = null)
    {
        RequireBrowser();
        var info = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, StandardOutputEncoding = Encoding.UTF8 };
        info.ArgumentList.Add(Script);
        info.ArgumentList.Add(scenario);
        info.ArgumentList.Add(url.ToString());
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        foreach (var (key, value) in environment ?? [])
        {
            info.Environment[key] = value;
        }
        using var process = Process.Start(info)!;
        var output = new StringBuilder();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try
        {
            while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
            {
                output.AppendLine(line);
                if (onLine is not null)
                {
                    await onLine(line);
                }
            }

            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        Assert.True(process.ExitCode == 0, $"{scenario} failed:\n{output}\n{await error}");
        Assert.Contains($"passed: {scenario}", output.ToString());
        return output.ToString();
    }

    [Theory]
    [InlineData("chat")]
    [InlineData("group")]
    [InlineData("history")]
    [InlineData("xss")]
    [InlineData("push")]
    public async Task The_page_works_in_headless_Chromium(string scenario)
    {
        await using var server = await TestServer.StartAsync();
        await RunAsync(scenario, server.Address);
        if (scenario == "chat")
        {
            // The page encrypts end to end: what the two wrote is in no file of the server's.
            foreach (var text in new[] { "hello bob", "hi alice" })
            {
                Assert.False(server.FilesHolding(text).Count > 0, $"'{text}' is readable in the server's data directory");
            }
        }
    }

    [Fact]
    public async Task The_page_and_the_CSharp_SDK_exchange_end_to_end_encrypted_messages_both_ways()
    {
        await using var server = await TestServer.StartAsync();
        var sdkUser = await server.RegisterAsync();
        var (_, token) = await server.LinkAsync(sdkUser);
        await using var sdk = new Client.SwitchboardClient(server.Address, token, new Client.SwitchboardClientOptions { E2eeStore = new Client.E2ee.InMemoryE2eeStore() });
        var received = new System.Collections.Concurrent.ConcurrentQueue<Client.MessageReceived>();
        using var stop = new CancellationTokenSource();
        var pump = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in sdk.ReadEventsAsync(stop.Token))
                {
                    if (e is Client.MessageReceived m)
                    {
                        received.Enqueue(m);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
        await sdk.ConnectAsync();
        Task? answering = null;
        string? browserUserName = null;
        string? safetyInPage = null;
        await RunAsync("interop", server.Address, line =>
        {
            if (line.StartsWith("SAFETY ", StringComparison.Ordinal))
            {
                safetyInPage = line["SAFETY ".Length..];
            }

            if (line.StartsWith("BROWSER_USER ", StringComparison.Ordinal))
            {
                var browserUser = browserUserName = line["BROWSER_USER ".Length..];
                answering = Task.Run(async () =>
                {
                    var deadline = DateTime.UtcNow.AddSeconds(30);
                    while (!received.Any(r => r.Text == "from the browser, sealed"))
                    {
                        Assert.True(DateTime.UtcNow < deadline, $"the SDK never decrypted the browser's message: {string.Join(" | ", received.Select(r => r.Text ?? r.DecryptionError))}");
                        await Task.Delay(50);
                    }

                    await sdk.SendTextAsync(Conv.Direct(sdkUser, browserUser), "from the sdk, sealed");
                });
            }

            return Task.CompletedTask;
        }, new Dictionary<string, string> { ["SDK_USER"] = sdkUser });
        await answering!;
        Assert.NotNull(received.Single(r => r.Text == "from the browser, sealed").Message.E2ee);
        Assert.Empty(server.FilesHolding("from the browser, sealed"));
        Assert.Empty(server.FilesHolding("from the sdk, sealed"));
        Assert.Equal(await sdk.GetSafetyNumberAsync(browserUserName!), safetyInPage); // computed the same way on both sides
        await stop.CancelAsync();
        await pump;
    }

    [Fact]
    public async Task The_page_reconnects_by_itself_after_the_server_restarts()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var settings = new Dictionary<string, string?> { ["urls"] = $"http://127.0.0.1:{port}" };
        var server = await TestServer.StartAsync(settings);
        var dataDir = server.DataDir;
        try
        {
            await RunAsync("reconnect", server.Address, async line =>
            {
                if (line == "READY")
                {
                    await server.StopAsync();
                    await Task.Delay(1500); // long enough for the page to notice
                    server = await TestServer.StartAsync(settings, dataDir);
                }
            });
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
