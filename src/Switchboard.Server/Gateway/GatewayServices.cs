using Microsoft.Extensions.Options;
using Switchboard.Server.Accounts;
using Switchboard.Server.Hosting;
using Switchboard.Server.Messaging;
using Switchboard.Server.Presence;
using Switchboard.Server.Routing;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Gateway;

/// <summary>What every connection needs, gathered once so a connection holds one reference instead of ten.</summary>
internal sealed partial class GatewayServices(
    IOptions<GatewayOptions> options,
    AccountService accounts,
    IMessageStore store,
    ISessionRouter router,
    ConnectionTable connections,
    MessageService messages,
    PresenceService presence,
    GroupDirectory groups,
    RateGates rates,
    SwitchboardMetrics metrics,
    GatewayAdmission admission,
    TimeProvider time,
    IOptions<Cluster.ClusterOptions> cluster,
    ILogger<GatewayConnection> logger)
{
    /// <summary>
    /// When the server stops, sockets are closed with 4003 at random moments within this window (cluster mode: the
    /// other nodes take them over, and not all at once); 0 closes them all at once.
    /// </summary>
    public int DrainWindowMs { get; } = cluster.Value.Enabled ? cluster.Value.DrainSeconds * 1000 : 0;

    public GatewayOptions Options { get; } = options.Value;
    public AccountService Accounts { get; } = accounts;
    public IMessageStore Store { get; } = store;
    public ISessionRouter Router { get; } = router;
    public ConnectionTable Connections { get; } = connections;
    public MessageService Messages { get; } = messages;
    public PresenceService Presence { get; } = presence;
    public GroupDirectory Groups { get; } = groups;
    public RateGates Rates { get; } = rates;
    public SwitchboardMetrics Metrics { get; } = metrics;
    public GatewayAdmission Admission { get; } = admission;
    public TimeProvider Time { get; } = time;

    [LoggerMessage(EventId = 3001, Level = LogLevel.Error, Message = "Connection of {User}/{Device} failed")]
    public partial void LogConnectionFailed(Exception exception, string user, int device);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Error, Message = "Frame from {User}/{Device} failed, reference {Reference}")]
    public partial void LogFrameFailed(Exception exception, string user, int device, string reference);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Error, Message = "Replay for {User}/{Device} failed")]
    public partial void LogReplayFailed(Exception exception, string user, int device);

    /// <summary>A client's mistake: answered with <c>bad_frame</c>, logged at debug level only, counted on /metrics.</summary>
    [LoggerMessage(EventId = 3004, Level = LogLevel.Debug, Message = "Bad frame from {User}/{Device}: {Reason}")]
    private partial void LogBadFrame(string user, int device, string reason);

    public void BadFrame(string user, int device, string reason)
    {
        Metrics.BadFrames.Inc();
        LogBadFrame(user, device, reason);
    }

    private ILogger Logger => logger;
}
