using System.Diagnostics;

namespace Switchboard.Tests;

/// <summary>
/// A small tmpfs mounted for one test, so a storage fault is a real one: the disk fills and writes fail with
/// ENOSPC. Needs root (CAP_SYS_ADMIN), as the test machines run.
/// </summary>
public sealed class SmallDisk : IAsyncDisposable
{
    private SmallDisk(string path) => Path = path;

    public string Path { get; }

    public static async Task<SmallDisk> MountAsync(int megabytes)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "switchboard-disk-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        var (code, error) = await RunAsync("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", path);
        Assert.True(code == 0, $"mount tmpfs on {path}: {error}");
        return new SmallDisk(path);
    }

    /// <summary>Writes a file until the disk is full; returns its path (delete it to make room again).</summary>
    public string Fill(string name = "filler")
    {
        var filler = System.IO.Path.Combine(Path, name);
        var chunk = new byte[1 << 20];
        Random.Shared.NextBytes(chunk);
        using var stream = new FileStream(filler, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        try
        {
            while (true)
            {
                stream.Write(chunk);
            }
        }
        catch (IOException)
        {
            // full
        }

        try
        {
            while (true)
            {
                stream.Write(chunk, 0, 4096); // the last pages
            }
        }
        catch (IOException)
        {
        }

        return filler;
    }

    public async ValueTask DisposeAsync()
    {
        await RunAsync("umount", "-l", Path);
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static async Task<(int Code, string Error)> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, error);
    }
}
