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

    /// <summary>Runs the server until it exits or <paramref name="until"/> appears in its output; then stops it.</summary>
    private static async Task<(int? ExitCode, string Output, string Error)> RunAsync(string[] args, string? until = null)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false, WorkingDirectory = Path.GetTempPath() };
        info.ArgumentList.Add(ServerProcess.ServerDll());
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var output = new System.Text.StringBuilder();
        var error = new System.Text.StringBuilder();
        var seen = new TaskCompletionSource();
        process.OutputDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }

            if (until is not null && e.Data?.Contains(until, StringComparison.Ordinal) == true)
            {
                seen.TrySetResult();
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            lock (error)
            {
                error.AppendLine(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await Task.WhenAny(process.WaitForExitAsync(timeout.Token), seen.Task);
        int? code = null;
        if (process.HasExited)
        {
            await process.WaitForExitAsync(timeout.Token);
            code = process.ExitCode;
        }
        else
        {
            process.Kill();
            await process.WaitForExitAsync(timeout.Token);
        }

        lock (output)
        {
            lock (error)
            {
                return (code, output.ToString(), error.ToString());
            }
        }
    }

    private static string NewDataDir() => Path.Combine(Path.GetTempPath(), "switchboard-startup-" + Guid.NewGuid().ToString("N"));

    private static void AssertOneLine(string output, string error)
    {
        Assert.DoesNotContain("   at ", output + error); // no stack trace anywhere
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public async Task A_good_start_is_one_line_with_version_urls_and_data_dir_and_a_misspelt_key_is_warned()
    {
        var dataDir = NewDataDir();
        var port = ServerProcess.FreePort();
        var (_, output, _) = await RunAsync(["--urls", $"http://127.0.0.1:{port}", "--Switchboard:DataDir", dataDir, "--Switchboard:Storage:SyncIntervalMicrosecond", "5"], until: "listening on");
        Assert.Contains($"listening on http://127.0.0.1:{port}, data dir {dataDir}, embedded mode", output);
        Assert.Contains("'Switchboard:Storage:SyncIntervalMicrosecond' is not a setting", output);
        Assert.Contains("did you mean 'Switchboard:Storage:SyncIntervalMicroseconds'", output);
        Assert.DoesNotContain("Now listening", output); // the host's own lines stay quiet
        Directory.Delete(dataDir, recursive: true);
    }

    [Fact]
    public async Task A_port_in_use_is_one_line_naming_the_address_and_exit_code_4()
    {
        using var holder = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        holder.Start();
        var port = ((System.Net.IPEndPoint)holder.LocalEndpoint).Port;
        var dataDir = NewDataDir();
        var (code, output, error) = await RunAsync(["--urls", $"http://127.0.0.1:{port}", "--Switchboard:DataDir", dataDir]);
        Assert.Equal(4, code);
        Assert.Contains($"cannot listen: Failed to bind to address http://127.0.0.1:{port}: address already in use", error);
        AssertOneLine(output, error);
        Directory.Delete(dataDir, recursive: true);
    }

    [Fact]
    public async Task A_data_dir_that_cannot_be_used_is_one_line_naming_it_and_exit_code_3()
    {
        // A file where a directory should be.
        var blocker = Path.Combine(Path.GetTempPath(), "switchboard-blocker-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(blocker, "");
        var (code, output, error) = await RunAsync(["--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", Path.Combine(blocker, "data")]);
        Assert.Equal(3, code);
        Assert.Contains($"data dir {Path.Combine(blocker, "data")}", error);
        AssertOneLine(output, error);
        File.Delete(blocker);

        // A read-only file system.
        var readOnly = Path.Combine(Path.GetTempPath(), "switchboard-ro-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(readOnly);
        using (var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", readOnly])!)
        {
            await mount.WaitForExitAsync();
            Assert.Equal(0, mount.ExitCode);
        }

        try
        {
            (code, output, error) = await RunAsync(["--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", readOnly]);
            Assert.Equal(3, code);
            Assert.Contains($"data dir {readOnly}: Read-only file system", error);
            AssertOneLine(output, error);
        }
        finally
        {
            await Process.Start("umount", ["-l", readOnly])!.WaitForExitAsync();
            Directory.Delete(readOnly);
        }

        // In use by another server.
        var shared = NewDataDir();
        await using (var first = await ServerProcess.StartAsync(shared))
        {
            (code, output, error) = await RunAsync(["--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", shared]);
            Assert.Equal(3, code);
            Assert.Contains($"data dir {shared} is in use by another server", error);
            AssertOneLine(output, error);
        }

        Directory.Delete(shared, recursive: true);
    }

    [Fact]
    public async Task The_store_has_a_schema_version_and_a_newer_one_is_refused_with_exit_code_3()
    {
        var dataDir = NewDataDir();
        await using (var first = await ServerProcess.StartAsync(dataDir))
        {
        }

        static Switchboard.Server.Storage.RocksDatabase Open(string dir) => new(
            Microsoft.Extensions.Options.Options.Create(new Switchboard.Server.Hosting.ServerOptions { DataDir = dir }),
            Microsoft.Extensions.Options.Options.Create(new Switchboard.Server.Storage.StorageOptions()),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Switchboard.Server.Storage.RocksDatabase>.Instance);

        using (var store = Open(dataDir))
        {
            Assert.Equal(Switchboard.Server.Storage.StoreSchema.Current, Switchboard.Server.Storage.StoreSchema.Migrate(store)); // written by the first start
            Switchboard.Server.Storage.StoreSchema.Write(store, 99); // as a newer server would leave it
        }

        var (code, output, error) = await RunAsync(["--urls", "http://127.0.0.1:0", "--Switchboard:DataDir", dataDir]);
        Assert.Equal(3, code);
        Assert.Contains("schema version 99, newer than this server reads", error);
        AssertOneLine(output, error);
        Directory.Delete(dataDir, recursive: true);
    }
}
