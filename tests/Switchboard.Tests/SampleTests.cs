using System.Diagnostics;

namespace Switchboard.Tests;

/// <summary>The README's SDK quick start (<c>samples/QuickStart</c>), run as it is against a real server, twice.</summary>
public sealed class SampleTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static string SampleDll()
    {
        var config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
        var path = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "QuickStart", config, "QuickStart.dll"));
        return File.Exists(path) ? path : throw new FileNotFoundException("QuickStart.dll not built next to the tests", path);
    }

    [Fact]
    public async Task The_sdk_quick_start_runs_as_pasted_and_runs_again()
    {
        for (var run = 0; run < 2; run++)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            info.ArgumentList.Add(SampleDll());
            info.Environment["SWITCHBOARD_URL"] = fixture.Server.Address.ToString();
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
            Assert.True(process.ExitCode == 0, await error);
            var text = await output;
            Assert.Contains("carol's message is stored as #1", text);
            Assert.Contains("dave got #1 from carol", text);
            Assert.Contains(": hello dave", text);
            Assert.Contains("history: #1 carol", text);
        }
    }

    [Fact]
    public void The_readme_shows_the_sample_as_it_is()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "README.md")) || !Directory.Exists(Path.Combine(root, "samples")))
        {
            root = Path.GetDirectoryName(root) ?? throw new DirectoryNotFoundException("the repository above the test binaries");
        }

        var readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        var sample = File.ReadAllText(Path.Combine(root, "samples", "QuickStart", "Program.cs")).ReplaceLineEndings("\n").TrimEnd('\n');
        Assert.Contains("```csharp\n" + sample + "\n```", readme);
    }
}
