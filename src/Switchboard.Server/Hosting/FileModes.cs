using System.Runtime.InteropServices;

namespace Switchboard.Server.Hosting;

/// <summary>
/// The data directory holds message bodies, password hashes and token hashes: it is the server user's alone.
/// New files are made 0600 and directories 0700 whatever the umask the process was started with (the process's
/// umask is set to 077, so RocksDB's own files follow too), and at start anything under the data directory that is
/// open to the group or to others is closed down, with a warning naming what was found.
/// </summary>
internal static class FileModes
{
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode PrivateFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode GroupOrOther = (UnixFileMode)0b000_111_111;

    /// <summary>Sets the process's umask to 077: every file and directory it makes is its user's alone.</summary>
    public static void RestrictNewFiles()
    {
        if (!OperatingSystem.IsWindows())
        {
            _ = umask(0b000_111_111);
        }
    }

    /// <summary>Creates the data directory 0700, or closes down an existing one and what is in it; returns what it had to change.</summary>
    public static (int Changed, string? Example) Secure(string dataDir)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(dataDir);
            return (0, null);
        }

        Directory.CreateDirectory(dataDir, PrivateDirectory);
        var changed = 0;
        string? example = null;
        void Tighten(string path, UnixFileMode wanted)
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & GroupOrOther) != 0)
            {
                File.SetUnixFileMode(path, (mode & ~GroupOrOther) | wanted);
                changed++;
                example ??= $"{path} ({Convert.ToString((int)mode, 8)})";
            }
        }

        Tighten(dataDir, PrivateDirectory);
        foreach (var entry in new DirectoryInfo(dataDir).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
        {
            Tighten(entry.FullName, entry is DirectoryInfo ? PrivateDirectory : PrivateFile);
        }

        return (changed, example);
    }

    // DllImport rather than LibraryImport, as in NativeMemory: a blittable argument, and no unsafe code compiled.
#pragma warning disable SYSLIB1054, CA5392
    [DllImport("libc", EntryPoint = "umask")]
    private static extern uint umask(uint mask);
#pragma warning restore SYSLIB1054, CA5392
}
