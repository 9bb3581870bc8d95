using System.Diagnostics;

namespace Switchboard.Cli.Commands;

/// <summary>
/// Runs the load generator (<c>switchboard-bench</c>, src/Switchboard.Bench) as a process of its own, with this
/// process's standard input, output and error, and returns its exit code. It is found next to this program (a
/// published install) or in the build output beside this one's (a build of the repository).
/// </summary>
internal static class BenchLauncher
{
    private const string Dll = "switchboard-bench.dll";

    public static async Task<int> RunAsync(string[] args)
    {
        if (Locate() is not { } dll)
        {
            await Console.Error.WriteLineAsync($"error: {Dll} not found next to switchboard; build or publish src/Switchboard.Bench");
            return ExitCodes.Usage;
        }

        var host = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var info = new ProcessStartInfo(host) { UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        await process.WaitForExitAsync();
        return process.ExitCode;
    }

    private static string? Locate()
    {
        var here = AppContext.BaseDirectory;
        var beside = Path.Combine(here, Dll);
        if (File.Exists(beside))
        {
            return beside;
        }

        // artifacts/bin/Switchboard.Cli/<configuration>/ → artifacts/bin/Switchboard.Bench/<configuration>/
        var configuration = new DirectoryInfo(here.TrimEnd(Path.DirectorySeparatorChar)).Name;
        var built = Path.GetFullPath(Path.Combine(here, "..", "..", "Switchboard.Bench", configuration, Dll));
        return File.Exists(built) ? built : null;
    }
}
