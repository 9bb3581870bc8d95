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
    private static async Task<string> RunAsync(string scenario, Uri url, Func<string, Task>? onLine = null)
    {
        RequireBrowser();
        var info = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, StandardOutputEncoding = Encoding.UTF8 };
        info.ArgumentList.Add(Script);
        info.ArgumentList.Add(scenario);
        info.ArgumentList.Add(url.ToString());
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
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
    public async Task The_page_works_in_headless_Chromium(string scenario)
    {
        await using var server = await TestServer.StartAsync();
        await RunAsync(scenario, server.Address);
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
