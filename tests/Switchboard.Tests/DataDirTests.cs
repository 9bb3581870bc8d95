using System.Runtime.InteropServices;

namespace Switchboard.Tests;

/// <summary>The data directory holds message bodies and credential hashes: the server user's alone.</summary>
public sealed class DataDirTests
{
#pragma warning disable SYSLIB1054, CA5392
    [DllImport("libc", EntryPoint = "umask")]
    private static extern uint umask(uint mask);
#pragma warning restore SYSLIB1054, CA5392

    private const UnixFileMode GroupOrOther = (UnixFileMode)0b000_111_111;

    [Fact]
    public async Task Files_are_0600_and_directories_0700_whatever_the_umask_and_loose_ones_are_closed_at_start()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-modes-" + Guid.NewGuid().ToString("N"));
        var open = (UnixFileMode)Convert.ToInt32("755", 8);
        Directory.CreateDirectory(dataDir, open);
        File.SetUnixFileMode(dataDir, open);
        var leftover = Path.Combine(dataDir, "notes.txt");
        await File.WriteAllTextAsync(leftover, "left by an operator");
        File.SetUnixFileMode(leftover, (UnixFileMode)Convert.ToInt32("644", 8));

        _ = umask(Convert.ToUInt32("022", 8)); // the usual umask: without the server's own, its files would be 0644
        await using var server = await TestServer.StartAsync(dataDir: dataDir);
        var alice = await server.NewClientAsync();
        var bob = await server.NewClientAsync();
        await alice.SendAsync(new { t = "send", cid = "m1", conv = $"dm:{(string.CompareOrdinal(alice.User, bob.User) < 0 ? alice.User + ":" + bob.User : bob.User + ":" + alice.User)}", kind = "text", body = "private" });
        await alice.ExpectAsync("ack");
        await server.Http.PostAsync("/v1/admin/checkpoint", null);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dataDir));
        var entries = new DirectoryInfo(dataDir).EnumerateFileSystemInfos("*", SearchOption.AllDirectories).ToList();
        Assert.Contains(entries, e => e.Name.EndsWith(".log", StringComparison.Ordinal)); // the store's log is there
        Assert.Contains(entries, e => e.FullName.Contains("checkpoints", StringComparison.Ordinal));
        Assert.All(entries, e => Assert.True((File.GetUnixFileMode(e.FullName) & GroupOrOther) == 0, $"{e.FullName} is {Convert.ToString((int)File.GetUnixFileMode(e.FullName), 8)}"));
    }

    [Fact]
    public async Task A_store_directory_that_cannot_take_new_files_is_not_ready()
    {
        await using var server = await TestServer.StartAsync();
        using (var ready = await server.Http.GetAsync("/readyz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, ready.StatusCode);
        }

        // The open log would still take writes; the store's next file could not be made.
        Directory.Delete(server.DataDir, recursive: true);
        using var notReady = await server.Http.GetAsync("/readyz");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        Assert.StartsWith("store unavailable", await notReady.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
