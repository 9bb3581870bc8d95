using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Prometheus;
using Switchboard.Protocol;
using Switchboard.Server.Abuse;
using Switchboard.Server.Accounts;
using Switchboard.Server.Cluster;
using Switchboard.Server.Delivery;
using Switchboard.Server.Fanout;
using Switchboard.Server.Gateway;
using Switchboard.Server.Http;
using Switchboard.Server.Messaging;
using Switchboard.Server.Presence;
using Switchboard.Server.Routing;
using Switchboard.Server.Storage;
using Switchboard.Server.Storage.Postgres;

using Switchboard.Server.Web;

namespace Switchboard.Server.Hosting;

/// <summary>
/// The one place that names concrete types: which implementation serves each seam, and in what order the
/// endpoints are mapped. Embedded mode (the default): RocksDB, in-memory router, presence and delivery. Cluster mode
/// (<c>Switchboard:Cluster:Enabled</c>): PostgreSQL shards, Redis for routing and presence, NATS between nodes.
/// </summary>
public static class SwitchboardHost
{
    /// <summary>Where the server listens when neither --urls nor ASPNETCORE_URLS says otherwise.</summary>
    public const string DefaultUrl = "http://127.0.0.1:5080";

    /// <summary>Builds the whole server from command-line arguments and the usual configuration sources.</summary>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        NativeMemory.TuneAllocator();
        FileModes.RestrictNewFiles(); // the data dir holds message bodies and credential hashes
        // The content root is the app's own folder, so its appsettings.json is read however it is started
        // (`dotnet run --project …` from anywhere); a relative DataDir is still taken from the working directory.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }

        builder.WebHost.UseSockets(o => o.Backlog = builder.Configuration.GetValue("Switchboard:Gateway:ListenBacklog", 4096));
        // Off by default in cluster mode: there the store, Redis and NATS are sockets too, and a completion that runs
        // on the socket event thread must never wait on another socket's.
        if (builder.Configuration.GetValue("Switchboard:Gateway:InlineSocketCompletions", !builder.Configuration.GetValue("Switchboard:Cluster:Enabled", false)))
        {
            // .NET reads this once, when the process makes its first socket (not yet: nothing listens before the
            // host starts). A socket's completions then run on its event thread instead of waking a thread-pool
            // thread per read. See GatewayOptions.InlineSocketCompletions.
            Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
        }
        configure?.Invoke(builder);
        AddSwitchboard(builder);
        var app = builder.Build();
        MapSwitchboard(app);
        return app;
    }

    /// <summary>Whether any configured endpoint is HTTPS (--urls, ASPNETCORE_URLS or Kestrel:Endpoints).</summary>
    private static bool ServesTls(IConfiguration config) =>
        (config["urls"] ?? "").Contains("https:", StringComparison.OrdinalIgnoreCase)
        || config.GetSection("Kestrel:Endpoints").GetChildren().Any(e =>
            (e["Url"] ?? "").StartsWith("https:", StringComparison.OrdinalIgnoreCase) || e.GetSection("Certificate").Exists());

    private static void AddSwitchboard(WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var config = builder.Configuration;
        var server = Bind<ServerOptions>(services, config.GetSection("Switchboard"), o => o.Validate());
        var storage = Bind<StorageOptions>(services, config.GetSection("Switchboard:Storage"), o => o.Validate());
        Bind<GatewayOptions>(services, config.GetSection("Switchboard:Gateway"), o => o.Validate());
        Bind<MessagingOptions>(services, config.GetSection("Switchboard:Messaging"), o => o.Validate());
        Bind<AccountsOptions>(services, config.GetSection("Switchboard:Accounts"), o => o.Validate());
        Bind<FanoutOptions>(services, config.GetSection("Switchboard:Fanout"), o => o.Validate());
        Bind<AbuseOptions>(services, config.GetSection("Switchboard:Abuse"), o => o.Validate());
        Bind<Push.PushOptions>(services, config.GetSection("Switchboard:Push"), o => o.Validate());
        var cluster = Bind<ClusterOptions>(services, config.GetSection("Switchboard:Cluster"), o => o.Validate());
        Bind<Web.WebOptions>(services, config.GetSection("Switchboard:Web"), o => o.Validate());
        services.AddSingleton<Web.OriginPolicy>();
        // Kestrel's own settings from configuration (Kestrel:Limits:MaxConcurrentConnections and the rest), as its
        // documentation describes them; the gateway applies the connection limits to its own sockets too.
        services.Configure<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>(config.GetSection("Kestrel"));
        services.Configure<ForwardedHeadersOptions>(o =>
        {
            o.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            o.ForwardLimit = null; // walk back through every trusted proxy in a chain
            o.KnownProxies.Clear(); // not even loopback unless configured: a local process must not pick its address
            o.KnownIPNetworks.Clear();
            foreach (var network in server.TrustedNetworks())
            {
                o.KnownIPNetworks.Add(network);
            }
        });

        services.TryAddSingleton(TimeProvider.System); // tests may bring their own clock
        services.AddSingleton(new IdGenerator(server.NodeId));
        services.AddSingleton<SwitchboardMetrics>();

        if (cluster.Enabled)
        {
            // Storage: PostgreSQL shards, shared by every node (so appends check the heads they build on).
            storage.SharedWriters = true;
            // Stopping drains the sockets over Cluster:DrainSeconds; the host waits for that and a margin.
            services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(Math.Max(30, cluster.DrainSeconds + 20)));
            services.AddSingleton(new ClusterNode(server.NodeId));
            services.AddSingleton(_ => new PgShards(cluster.Shards, cluster.MaxConnectionsPerShard));
            services.AddSingleton<IMessageStore, PgMessageStore>();
            services.AddSingleton<IAccountStore, PgAccountStore>();
            services.AddHostedService<ClusterLifetime>();
        }
        else
        {
            // Storage: the embedded RocksDB, for messages and accounts.
            services.AddSingleton<RocksDatabase>();
            services.AddSingleton<IMessageStore, RocksMessageStore>();
            services.AddSingleton<IAccountStore, RocksAccountStore>();
            services.AddHostedService<StoreLifetime>();
        }

        services.AddHostedService<RetentionJob>();
        services.AddHostedService<IdleMemoryTrim>();

        // Accounts.
        services.AddSingleton<AccountService>();
        services.AddSingleton<PasswordHasher>();
        services.AddSingleton<AbuseGuard>();

        // Push: Web Push to devices without a live socket.
        services.AddSingleton<Push.VapidKeys>();
        services.AddSingleton<Push.DeliveryJournal>();
        services.AddSingleton<Push.PushDispatcher>();
        services.AddHostedService(sp => sp.GetRequiredService<Push.PushDispatcher>());

        services.AddSingleton<PresenceService>();
        services.AddHostedService<PresenceSweeper>();
        services.AddSingleton<ConnectionTable>();
        services.AddSingleton<ILocalSessions>(sp => sp.GetRequiredService<ConnectionTable>());
        services.AddSingleton<IFanoutQueue, ChannelFanoutQueue>();
        if (cluster.Enabled)
        {
            // Routing and presence in Redis, node-to-node hints over NATS, lost hints repaired from the store.
            services.AddSingleton<RedisSessionRouter>();
            services.AddSingleton<ISessionRouter>(sp => sp.GetRequiredService<RedisSessionRouter>());
            services.AddSingleton<IPresenceStore, RedisPresenceStore>();
            services.AddSingleton<ClusterBus>();
            services.AddSingleton<LocalDeliveryHub>();
            services.AddSingleton<HeadWatch>();
            services.AddHostedService(sp => sp.GetRequiredService<HeadWatch>());
            services.AddSingleton<ClusterDeliveryHub>();
            services.AddSingleton<IDeliveryHub>(sp => sp.GetRequiredService<ClusterDeliveryHub>());
            services.AddSingleton<IPresenceRelay, BusPresenceRelay>();
            services.AddSingleton<IBucketSets, RedisBucketSets>(); // abuse limits shared by every node
        }
        else
        {
            // Routing, presence and delivery: in memory, every socket on this node.
            services.AddSingleton<ISessionRouter, InMemorySessionRouter>();
            services.AddSingleton<IPresenceStore, InMemoryPresenceStore>();
            services.AddSingleton<IDeliveryHub, LocalDeliveryHub>();
        }

        // The message path: rules and sequencer above the store, then the front that the gateway calls.
        services.AddSingleton<GroupDirectory>();
        services.AddSingleton<ConversationAccess>();
        services.AddSingleton<MessageRules>();
        services.AddSingleton<Sequencer>();
        services.AddSingleton<RateGates>();
        services.AddSingleton<GroupReceipts>();
        services.AddSingleton<MessageService>();
        services.AddSingleton<GatewayAdmission>();
        services.AddSingleton<GatewayServices>();
        services.AddSingleton<GatewayUpgrade>();
        // Registered after UseSockets: Kestrel asks the last registered transport first, and this one binds every
        // TCP endpoint (unless Gateway:OwnSockets is false), handing Kestrel the connections that are not /v1/ws.
        // Not with TLS endpoints: TLS is Kestrel's, so the gateway stays on Kestrel's WebSocket path there.
        if (!ServesTls(config))
        {
            services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory, GatewayTransportFactory>();
        }
        services.AddHostedService<HeartbeatMonitor>();
    }

    private static void MapSwitchboard(WebApplication app)
    {
        app.UseHttpFaults(); // first: every failure below is answered with a body
        if (app.Services.GetRequiredService<IOptions<ServerOptions>>().Value.TrustedProxies.Length > 0)
        {
            app.UseForwardedHeaders();
        }

        if (!app.Services.GetRequiredService<IOptions<AbuseOptions>>().Value.Enabled)
        {
            app.Logger.LogWarning("Switchboard:Abuse:Enabled is false: sign-ups, logins and device links are not limited per address or account. Only for load tests.");
        }

        app.UseOriginCheck();
        app.MapWebClient();
        app.UseWebSockets();
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", async (IMessageStore store, Sequencer sequencer, CancellationToken cancellationToken) =>
        {
            if (sequencer.Failing is { } failing)
            {
                return Results.Text($"store unavailable: the last group commit failed: {failing}", statusCode: 503);
            }

            try
            {
                await store.ProbeAsync(cancellationToken); // a synced write: ready means the store can commit
                return Results.Text("ready");
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                return Results.Text($"store unavailable: {ex.Message}", statusCode: 503);
            }
        });
        if (!app.Services.GetRequiredService<IOptions<ClusterOptions>>().Value.Enabled)
        {
            MapCheckpoint(app);
        }

        app.MapMetrics("/metrics", app.Services.GetRequiredService<SwitchboardMetrics>().Registry);
        app.MapAccountEndpoints();
        app.MapConversationEndpoints();
        app.MapGroupEndpoints();
        Push.PushEndpoints.MapPushEndpoints(app);
        app.MapKeyEndpoints();
        app.MapGateway();
    }

    /// <summary>An embedded store's consistent copy, for backups (a cluster backs up its PostgreSQL shards instead).</summary>
    private static void MapCheckpoint(WebApplication app)
    {
        app.MapPost("/v1/admin/checkpoint", (HttpContext context, RocksDatabase database) =>
        {
            // An operator's call on the machine itself: there are no admin accounts, so only loopback may ask.
            if (context.Connection.RemoteIpAddress is not { } peer || !System.Net.IPAddress.IsLoopback(peer))
            {
                return Http.HttpHelpers.Error(403, ErrorCodes.Forbidden, "checkpoints are made on the server's own machine (a loopback address)");
            }

            try
            {
                return Results.Json(new Dictionary<string, string> { ["path"] = database.Checkpoint() }, statusCode: 201);
            }
            catch (Exception ex) when (ex is StoreUnavailableException or RocksDbSharp.RocksDbException or IOException)
            {
                return Http.HttpHelpers.Error(503, ErrorCodes.Unavailable, $"no checkpoint: {ex.Message}");
            }
        });
    }

    private static T Bind<T>(IServiceCollection services, IConfiguration section, Action<T> validate)
        where T : class, new()
    {
        var options = new T();
        section.Bind(options);
        validate(options); // a bad setting stops the process here, with the message naming the key
        services.AddSingleton<IOptions<T>>(Options.Create(options));
        return options;
    }
}

/// <summary>
/// Opens the store (importing an earlier SQLite data dir on first start), starts the sequencer with the message
/// service as its observer; at stop, lets the sequencer commit what it has queued, then closes the store.
/// </summary>
internal sealed class StoreLifetime(RocksDatabase database, Sequencer sequencer, MessageService messages, MessageRules rules, GroupDirectory groups, GroupReceipts receipts, SwitchboardMetrics metrics) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        sequencer.Start(messages);
        metrics.Observe("switchboard_storage_wal_written_bytes", "Bytes the store wrote to its log since it opened.", () => database.WrittenBytes().Wal);
        metrics.Observe("switchboard_storage_flush_written_bytes", "Bytes the store wrote flushing memtables to table files since it opened.", () => database.WrittenBytes().Flush);
        metrics.Observe("switchboard_storage_compaction_written_bytes", "Bytes the store wrote compacting table files since it opened.", () => database.WrittenBytes().Compaction);
        metrics.Observe("switchboard_storage_memtable_bytes", "Memory in the store's memtables.", () => database.Usage().Memtables);
        metrics.Observe("switchboard_storage_block_cache_bytes", "Memory in the store's block cache.", () => database.Usage().BlockCache);
        metrics.Observe("switchboard_storage_table_readers_bytes", "Memory of the store's open table files (indexes and filters).", () => database.Usage().TableReaders);
        metrics.Observe("switchboard_storage_files_bytes", "Size of the store's table files on disk.", () => database.Usage().Files);
        metrics.Observe("switchboard_messaging_cached_entries", "Entries in the sequencer's caches (last seqs, cursors, known users).", () => rules.CachedEntries);
        metrics.Observe("switchboard_messaging_groups_cached", "Group memberships in the group directory.", () => groups.Count);
        metrics.Observe("switchboard_messaging_group_receipts_cached", "Groups whose receipt aggregates are in memory.", () => receipts.Count);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        sequencer.Dispose();
        database.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>Deletes events older than the retention period, a bounded chunk at a time.</summary>
internal sealed partial class RetentionJob(IMessageStore store, IOptions<StorageOptions> options, TimeProvider time, ILogger<RetentionJob> logger) : BackgroundService
{
    [LoggerMessage(EventId = 1101, Level = LogLevel.Error, Message = "Retention purge failed")]
    private partial void LogPurgeFailed(Exception exception);

    private ILogger Logger => logger;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(options.Value.PurgeIntervalMinutes));
        do
        {
            var cutoff = time.GetUtcNow().ToUnixTimeMilliseconds() - (options.Value.RetentionDays * 86_400_000L);
            // Small chunks keep each delete's write lock short, so the group commit is never held up for long.
            try
            {
                while (!stoppingToken.IsCancellationRequested && await store.PurgeAsync(cutoff, 1000, stoppingToken) >= 1000)
                {
                    await Task.Delay(200, stoppingToken);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogPurgeFailed(ex); // tried again at the next interval; the server keeps running
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
