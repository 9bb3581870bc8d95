using System.Text.Json;
using System.Threading.Channels;
using Switchboard.Protocol;

namespace Switchboard.Client;

/// <summary>
/// A Switchboard device: one WebSocket kept open (reconnecting by itself with jittered backoff), an outbox that
/// resends every unacked send with its cid until the server acks it, events delivered once and in seq order per
/// conversation (duplicates dropped, gaps repaired with <c>sync</c>), cumulative <c>recv</c> sent for what the
/// application was given, and the HTTP API.
/// </summary>
/// <example>
/// <code>
/// var url = new Uri("http://127.0.0.1:5080");
/// await SwitchboardClient.RegisterAsync(url, "alice", "correct horse");
/// var device = await SwitchboardClient.LinkDeviceAsync(url, "alice", "correct horse", "laptop");
/// await using var client = new SwitchboardClient(url, device.Token);
/// await client.ConnectAsync();
/// await client.SendTextAsync(SwitchboardClient.DirectConversation("alice", "bob"), "hi bob");
/// await foreach (var e in client.ReadEventsAsync())
///     if (e is MessageReceived m) Console.WriteLine($"{m.Message.From}: {m.Message.Body}");
/// </code>
/// </example>
public sealed partial class SwitchboardClient : IAsyncDisposable
{
    private readonly Uri[] _servers;
    private int _serverIndex;
    private readonly string _token;
    private readonly SwitchboardClientOptions _options;
    private readonly IClientStateStore _state;
    private readonly HttpClient _http;
    private readonly Channel<ClientEvent> _events;
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Creates a client for the server at <paramref name="url"/> (http or https) with a device token.</summary>
    public SwitchboardClient(Uri url, string token, SwitchboardClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentException.ThrowIfNullOrEmpty(token);
        _token = token;
        _options = options ?? new SwitchboardClientOptions();
        _servers = [url, .. _options.OtherServers];
        _state = _options.State ?? new InMemoryClientStateStore();
        _http = NewHttpClient(url, _options.HttpHandler);
        _http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        _events = Channel.CreateBounded<ClientEvent>(new BoundedChannelOptions(_options.EventBuffer) { SingleReader = false, FullMode = BoundedChannelFullMode.Wait });
        _e2e = _options.E2eeStore is null ? null : InitEndToEnd();
        (User, Device) = (_options.Self?.User, _options.Self?.Device);
    }

    /// <summary>Creates a client for the server at <paramref name="url"/> with a device token.</summary>
    public SwitchboardClient(string url, string token, SwitchboardClientOptions? options = null)
        : this(new Uri(url), token, options)
    {
    }

    /// <summary>The server this client talks to now (it moves to the next of <see cref="SwitchboardClientOptions.OtherServers"/> when one is gone).</summary>
    public Uri Server => _servers[Volatile.Read(ref _serverIndex) % _servers.Length];

    private void NextServer() => Interlocked.Increment(ref _serverIndex);

    /// <summary>An API path on the current server.</summary>
    private Uri Api(string path) => new(Server, path);

    /// <summary>The connection's current state.</summary>
    public ConnectionState State { get; private set; } = ConnectionState.Disconnected;

    /// <summary>The user this token belongs to, known after the first welcome.</summary>
    public string? User { get; private set; }

    /// <summary>The device number of this token, known after the first welcome.</summary>
    public int? Device { get; private set; }

    /// <summary>The canonical id of the direct conversation of two users.</summary>
    public static string DirectConversation(string a, string b) => Names.DirectConversation(a, b);

    /// <summary>Everything that happens on the connection, in order. Read it continuously: the connection waits for the reader.</summary>
    public IAsyncEnumerable<ClientEvent> ReadEventsAsync(CancellationToken cancellationToken = default) =>
        _events.Reader.ReadAllAsync(cancellationToken);

    /// <summary>
    /// Sends a text message; completes with the ack once the server has made it durable. With end-to-end encryption
    /// on, the text is encrypted for every device of the conversation (and the send made again for the devices the
    /// server lists if they changed); <see cref="SwitchboardException"/> <c>no_keys</c> when a device has published none.
    /// </summary>
    public Task<AckFrame> SendTextAsync(string conv, string body, long? replyTo = null, CancellationToken cancellationToken = default) =>
        _e2e is not null
            ? SendSealedAsync(new E2ee.Sealing(conv, EventKinds.Text, body, null), replyTo, cancellationToken)
            : SendFrameAsync(new ClientFrame { T = FrameTypes.Send, Conv = conv, Kind = EventKinds.Text, Body = body, ReplyTo = replyTo }, cancellationToken);

    /// <summary>Sends a message of any kind with a plain body or an <c>e2ee</c> payload (exactly one).</summary>
    public Task<AckFrame> SendAsync(string conv, string kind, string? body, JsonElement? e2ee = null, long? replyTo = null, string? cid = null, CancellationToken cancellationToken = default) =>
        SendFrameAsync(new ClientFrame { T = FrameTypes.Send, Conv = conv, Kind = kind, Body = body, E2ee = e2ee, ReplyTo = replyTo, Cid = cid }, cancellationToken);

    /// <summary>Replaces the body of one of your messages (an <c>edit</c> event).</summary>
    /// <remarks>With end-to-end encryption on, the new text is encrypted unless <paramref name="encrypt"/> is false.</remarks>
    public Task<AckFrame> EditAsync(string conv, long target, string body, bool encrypt = true, CancellationToken cancellationToken = default) =>
        _e2e is not null && encrypt
            ? SendSealedAsync(new E2ee.Sealing(conv, EventKinds.Edit, body, target), null, cancellationToken)
            : SendFrameAsync(new ClientFrame { T = FrameTypes.Edit, Conv = conv, Target = target, Body = body }, cancellationToken);

    /// <summary>Deletes a message for everyone (a <c>delete</c> event).</summary>
    public Task<AckFrame> DeleteAsync(string conv, long target, CancellationToken cancellationToken = default) =>
        SendFrameAsync(new ClientFrame { T = FrameTypes.Delete, Conv = conv, Target = target }, cancellationToken);

    /// <summary>Tells the other members the user has read up to <paramref name="seq"/> (the blue tick).</summary>
    public Task MarkReadAsync(string conv, long seq, CancellationToken cancellationToken = default) =>
        SendTransientAsync(new ClientFrame { T = FrameTypes.Read, Conv = conv, Seq = seq }, cancellationToken);

    /// <summary>Starts or stops the typing indicator in a conversation (never stored; dropped when offline).</summary>
    public Task SetTypingAsync(string conv, bool on, CancellationToken cancellationToken = default) =>
        SendTransientAsync(new ClientFrame { T = FrameTypes.Typing, Conv = conv, On = on }, cancellationToken);

    /// <summary>Replaces the set of users whose presence this device follows (its open chats).</summary>
    public Task WatchAsync(IEnumerable<string> users, CancellationToken cancellationToken = default)
    {
        var list = users.ToArray();
        _watching = list;
        return SendTransientAsync(new ClientFrame { T = FrameTypes.Watch, Users = list }, cancellationToken);
    }

    /// <summary>Closes the connection and stops reconnecting. Unacked sends stay in the state store.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await CloseSocketAsync(); // close first: cancelling would abort the socket and send no close frame
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (Exception)
            {
                // the loop's failures are its own; disposing must finish
            }
        }

        SetState(ConnectionState.Disconnected, null);
        _events.Writer.TryComplete();
        _firstWelcome.TrySetCanceled();
        foreach (var (_, waiter) in _waiting)
        {
            waiter.TrySetCanceled();
        }

        _http.Dispose();
        _stop.Dispose();
    }

    private static HttpClient NewHttpClient(Uri url, HttpMessageHandler? handler) =>
        new(handler ?? new SocketsHttpHandler(), disposeHandler: handler is null) { BaseAddress = url, Timeout = TimeSpan.FromSeconds(60) };
}
