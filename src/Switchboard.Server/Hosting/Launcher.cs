using System.Reflection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Hosting;

/// <summary>
/// Runs the server as a process: a failure to start is one line on standard error that names the key, the path
/// or the address, and an exit code of its own (see <see cref="ExitCodes"/>); a good start is one log line.
/// </summary>
public static partial class Launcher
{
    /// <summary>Exit codes of the server process.</summary>
    public static class ExitCodes
    {
        public const int Ok = 0;
        public const int Failed = 1;
        public const int BadSetting = 2;
        public const int DataDir = 3;
        public const int CannotListen = 4;
    }

    public static int Run(string[] args)
    {
        WebApplication app;
        try
        {
            app = SwitchboardHost.Build(args);
            foreach (var unknown in SettingsCheck.UnknownKeys(app.Configuration))
            {
                LogUnknownSetting(app.Logger, unknown);
            }

            // The store first, before anything listens: a data dir (or a shard) that cannot be used is said so, with
            // its path (or address).
            if (Clustered(app))
            {
                app.Services.GetRequiredService<Storage.Postgres.PgShards>().PrepareAsync(CancellationToken.None).GetAwaiter().GetResult();
            }
            else
            {
                _ = app.Services.GetRequiredService<RocksDatabase>();
            }
        }
        catch (DataDirException ex)
        {
            return Fail(ExitCodes.DataDir, ex.Message);
        }
        catch (Storage.Postgres.ShardUnavailableException ex)
        {
            // A shard that does not answer may come back (exit 1: a supervisor starts the node again); a shard
            // that answers wrongly (another map, synchronous_commit off) will not (3, as a data dir that cannot be used).
            return Fail(ex.Unreachable ? ExitCodes.Failed : ExitCodes.DataDir, ex.Message);
        }
        catch (InvalidOperationException ex)
        {
            return Fail(ExitCodes.BadSetting, $"configuration error: {ex.Message}");
        }

        try
        {
            app.Start();
        }
        catch (IOException ex) when (ex.Message.StartsWith("Failed to bind", StringComparison.Ordinal) || ex.InnerException is System.Net.Sockets.SocketException or Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            return Fail(ExitCodes.CannotListen, $"cannot listen: {ex.Message.TrimEnd('.')}");
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var version = (typeof(Launcher).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?").Split('+')[0];
        var urls = string.Join(' ', addresses);
        if (Clustered(app))
        {
            var node = app.Services.GetRequiredService<Cluster.ClusterNode>().Id;
            var shards = app.Services.GetRequiredService<Storage.Postgres.PgShards>().Count;
            LogStartedNode(app.Logger, version, urls, node, shards);
        }
        else
        {
            var dataDir = app.Services.GetRequiredService<RocksDatabase>().DataDir;
            LogStarted(app.Logger, version, urls, dataDir);
        }

        app.WaitForShutdown();
        return ExitCodes.Ok;
    }

    [LoggerMessage(EventId = 1301, Level = LogLevel.Information, Message = "Switchboard {Version} listening on {Urls}, data dir {DataDir}, embedded mode; Ctrl+C stops it")]
    private static partial void LogStarted(ILogger logger, string version, string urls, string dataDir);

    [LoggerMessage(EventId = 1303, Level = LogLevel.Information, Message = "Switchboard {Version} listening on {Urls}, cluster node {Node} on {Shards} PostgreSQL shards; Ctrl+C stops it")]
    private static partial void LogStartedNode(ILogger logger, string version, string urls, int node, int shards);

    private static bool Clustered(WebApplication app) => app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Cluster.ClusterOptions>>().Value.Enabled;

    [LoggerMessage(EventId = 1302, Level = LogLevel.Warning, Message = "{Problem}")]
    private static partial void LogUnknownSetting(ILogger logger, string problem);

    private static int Fail(int code, string message)
    {
        Console.Error.WriteLine($"switchboard: {message}");
        return code;
    }
}
