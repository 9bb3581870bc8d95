using System.Diagnostics;

namespace Switchboard.Tests;

public sealed class StartupTests
{
    [Theory]
    [InlineData("--Switchboard:Gateway:HeartbeatSeconds", "0", "HeartbeatSeconds")]
    [InlineData("--Switchboard:Fanout:MaxGroupMembers", "1", "MaxGroupMembers")]
    [InlineData("--Switchboard:Storage:RetentionDays", "soon", "RetentionDays")]
    [InlineData("--Switchboard:IdleTrimAfterMegabytes", "-1", "IdleTrimAfterMegabytes")]
    [InlineData("--Switchboard:Abuse:LinksPerAddress:Burst", "0", "LinksPerAddress")]
    [InlineData("--Switchboard:TrustedProxies:0", "proxy.example", "TrustedProxies")]
    public async Task A_bad_setting_stops_the_server_with_a_clear_message(string key, string value, string named)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-startup-" + Guid.NewGuid().ToString("N"));
        foreach (var arg in new[] { ServerProcess.ServerDll(), "--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", dataDir, key, value })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.Equal(2, process.ExitCode);
        var message = await error;
        Assert.Contains("configuration error", message);
        Assert.Contains(named, message);
        Assert.DoesNotContain("   at ", message); // one line, no stack trace
        if (Directory.Exists(dataDir))
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }
}
