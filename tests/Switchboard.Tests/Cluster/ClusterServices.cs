using System.Diagnostics;
using Npgsql;

namespace Switchboard.Tests.Cluster;

/// <summary>
/// The real PostgreSQL shards, Redis and NATS the cluster tests run on. The test command starts them
/// (<c>scripts/services.sh up</c>) and names them in <c>SWITCHBOARD_SHARD1</c>, <c>SWITCHBOARD_SHARD2</c>,
/// <c>SWITCHBOARD_REDIS</c> and <c>SWITCHBOARD_NATS</c>; a test run started without them (plain <c>dotnet test</c>)
/// starts its own once, the same way, and stops them when the run ends.
/// </summary>
internal static class ClusterServices
{
    private static readonly Lazy<Settings> Started = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);

    public static Settings Current => Started.Value;

    internal sealed record Settings(string[] Shards, string Redis, string Nats, string? Dir)
    {
        /// <summary>The shards with a search path of their own, so a test's tables are its alone; made on first use.</summary>
        public string[] ShardsIn(string schema)
        {
            foreach (var shard in Shards)
            {
                using var source = NpgsqlDataSource.Create(shard);
                using var command = source.CreateCommand($"CREATE SCHEMA IF NOT EXISTS {schema}");
                command.ExecuteNonQuery();
            }

            return [.. Shards.Select(s => new NpgsqlConnectionStringBuilder(s) { SearchPath = schema }.ConnectionString)];
        }

        public void DropSchema(string schema)
        {
            foreach (var shard in Shards)
            {
                using var source = NpgsqlDataSource.Create(shard);
                using var command = source.CreateCommand($"DROP SCHEMA IF EXISTS {schema} CASCADE");
                command.ExecuteNonQuery();
            }
        }
    }

    /// <summary>Services of one test's own, for faults that stop or wipe them (the shared ones stay up for the others).</summary>
    public static PrivateServices StartPrivate()
    {
        var dir = Path.Combine(Path.GetTempPath(), "switchboard-faults-" + Guid.NewGuid().ToString("N")[..8]);
        Run("up", dir);
        return new PrivateServices(Read(dir), dir);
    }

    private static Settings Read(string dir)
    {
        var env = File.ReadAllLines(Path.Combine(dir, "services.env"))
            .Select(l => l.StartsWith("export ", StringComparison.Ordinal) ? l[7..] : l)
            .Where(l => l.Contains('='))
            .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..].Trim('"', '\''));
        return new Settings([env["SWITCHBOARD_SHARD1"], env["SWITCHBOARD_SHARD2"]], env["SWITCHBOARD_REDIS"], env["SWITCHBOARD_NATS"], dir);
    }

    private static Settings Start()
    {
        if (Environment.GetEnvironmentVariable("SWITCHBOARD_SHARD1") is { Length: > 0 } shard1)
        {
            return new Settings(
                [shard1, Environment.GetEnvironmentVariable("SWITCHBOARD_SHARD2") ?? throw new InvalidOperationException("SWITCHBOARD_SHARD2 is not set")],
                Environment.GetEnvironmentVariable("SWITCHBOARD_REDIS") ?? "",
                Environment.GetEnvironmentVariable("SWITCHBOARD_NATS") ?? "",
                Environment.GetEnvironmentVariable("SERVICES_DIR"));
        }

        var dir = Path.Combine(Path.GetTempPath(), "switchboard-services-" + Guid.NewGuid().ToString("N")[..8]);
        Run("up", dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Run("down", dir);
        return Read(dir);
    }

    public static string RepoRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "Switchboard.slnx")))
        {
            dir = Path.GetDirectoryName(dir) ?? throw new DirectoryNotFoundException("Switchboard.slnx above the test binaries");
        }

        return dir;
    }

    /// <summary>Runs <c>scripts/services.sh</c> with these arguments; throws with its output when it fails.</summary>
    public static void Run(params string[] args)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(RepoRoot(), "scripts", "services.sh"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"services.sh {string.Join(' ', args)} did not finish");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"services.sh {string.Join(' ', args)} failed ({process.ExitCode}): {output.Result}{errors.Result}");
        }
    }
}

/// <summary>A test's own PostgreSQL shards, Redis and NATS, which it may stop, start and wipe.</summary>
internal sealed class PrivateServices(ClusterServices.Settings settings, string dir) : IDisposable
{
    public ClusterServices.Settings Settings { get; } = settings;

    /// <summary>Stops one of <c>pg1 pg2 redis nats</c> (SIGKILL for Redis and NATS, an immediate stop for PostgreSQL).</summary>
    public void Stop(string name) => ClusterServices.Run("stop", dir, name);

    /// <summary>Starts it again on the same port; <paramref name="wipe"/> empties its state first.</summary>
    public void Start(string name, bool wipe = false)
    {
        if (wipe)
        {
            ClusterServices.Run("start", dir, name, "--wipe");
        }
        else
        {
            ClusterServices.Run("start", dir, name);
        }
    }

    public void Dispose()
    {
        try
        {
            ClusterServices.Run("down", dir);
            Directory.Delete(dir, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
        }
    }
}
