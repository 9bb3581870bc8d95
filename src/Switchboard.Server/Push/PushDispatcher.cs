using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Lib.Net.Http.WebPush;
using Lib.Net.Http.WebPush.Authentication;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Delivery;
using Switchboard.Server.Hosting;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Push;

/// <summary>A stored event that may wake devices, with who should get it.</summary>
internal readonly record struct PushCandidate(EventRecord Event, IReadOnlyList<string> Members);

/// <summary>
/// Wakes devices that have no live socket when an event reaches them. The commit path only offers events to a
/// bounded queue (<see cref="Offer"/>); this worker finds, per member, the devices with a push registration and no
/// socket on this node, skips muted conversations and the sender, and waits <c>CoalesceMilliseconds</c> so a burst
/// is one push per device and conversation (the newest wins; the conversation is the collapse key). Before sending,
/// it looks again: a device that came back meanwhile gets nothing. Web Push (RFC 8030, aes128gcm per RFC 8291,
/// VAPID per RFC 8292) through Lib.Net.Http.WebPush; a registration the service answers 404 or 410 is removed.
/// </summary>
internal sealed partial class PushDispatcher(
    IOptions<PushOptions> options,
    VapidKeys vapid,
    IAccountStore accounts,
    IMessageStore store,
    ILocalSessions sessions,
    AccountService accountService,
    IOptions<Gateway.GatewayOptions> gateway,
    DeliveryJournal journal,
    TimeProvider time,
    SwitchboardMetrics metrics,
    ILogger<PushDispatcher> logger,
    Routing.ISessionRouter? router = null) : BackgroundService
{
    /// <summary>Told when this node sees a user's registrations change (cluster mode: passed on to the other nodes).</summary>
    public Action<string, bool>? Relay { get; set; }

    private readonly PushOptions _options = options.Value;
    private readonly Channel<PushCandidate> _queue = Channel.CreateBounded<PushCandidate>(new BoundedChannelOptions(options.Value.QueueCapacity) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>Pushes waiting for their coalescing time: (user, device, conv) → the newest event and when it is due.</summary>
    private readonly Dictionary<(string User, int Device, string Conv), (EventRecord Event, long Due, int Attempt)> _pending = [];

    /// <summary>Tries of one push before it is given up (429 and 5xx answers are tried again after their wait).</summary>
    private const int MaxAttempts = 3;

    private FcmSender? _fcm;
    private ApnsSender? _apns;

    /// <summary>
    /// Users with at least one push registration, loaded at start and kept as registrations come and go: the commit
    /// path offers an event only when one of its recipients could be pushed to, so a server without push
    /// registrations does no push work at all.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _registered = new(StringComparer.Ordinal);
    private volatile bool _loaded;

    /// <summary>A registration was made or removed for this user (here, or on another node: <paramref name="fromPeer"/>).</summary>
    public void Registered(string user, bool any, bool fromPeer = false)
    {
        if (!fromPeer)
        {
            Relay?.Invoke(user, any);
        }

        if (any)
        {
            _registered[user] = true;
        }
        else
        {
            _registered.TryRemove(user, out _);
        }
    }

    /// <summary>From the commit path: never waits; a full queue drops the event (counted), the store still has it.</summary>
    public void Offer(EventRecord stored, IReadOnlyList<string> members)
    {
        if (!_options.Enabled || stored.Kind is not (EventKinds.Text or EventKinds.Media))
        {
            return; // edits, deletes, group changes and receipts never push
        }

        if (_loaded && !members.Any(m => m != stored.Sender && _registered.ContainsKey(m)))
        {
            return; // no one here could be pushed to
        }

        if (!_queue.Writer.TryWrite(new PushCandidate(stored, members)))
        {
            metrics.PushDropped.Inc();
            journal.Record(stored.Conv, stored.Seq, new JourneyStep("*", 0, Now(), "not pushed", "the push queue was full"));
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.Enabled)
        {
            return;
        }

        foreach (var user in await accounts.GetUsersWithPushAsync(stoppingToken))
        {
            _registered.TryAdd(user, true);
        }

        _loaded = true;
        using var auth = new VapidAuthentication(vapid.PublicKey, vapid.PrivateKey) { Subject = _options.VapidSubject };
        using var http = new HttpClient(new VapidAudienceHandler(auth) { InnerHandler = new SocketsHttpHandler { ConnectCallback = ConnectAsync } })
        {
            Timeout = TimeSpan.FromSeconds(_options.TimeoutSeconds),
        };
        var client = new PushServiceClient(http) { AutoRetryAfter = true, MaxRetriesAfter = 3, DefaultTimeToLive = 86_400 };
        // Providers the operator configured are trusted addresses: no private-address filter on their client.
        using var providers = new HttpClient { Timeout = TimeSpan.FromSeconds(_options.TimeoutSeconds) };
        _fcm = _options.Fcm.ServiceAccountFile is null ? null : new FcmSender(_options.Fcm, providers, time);
        _apns = _options.Apns.Configured ? new ApnsSender(_options.Apns, providers, time) : null;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(_options.CoalesceMilliseconds / 4, 10, 250));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // New events for up to one tick, then whatever is due.
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                wait.CancelAfter(tick);
                try
                {
                    while (await _queue.Reader.WaitToReadAsync(wait.Token))
                    {
                        while (_queue.Reader.TryRead(out var candidate))
                        {
                            await ScheduleAsync(candidate, stoppingToken);
                        }
                    }
                }
                catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
                {
                    // the tick is over
                }

                await SendDueAsync(client, auth, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogFailed(ex);
            }
        }
    }

    private async ValueTask ScheduleAsync(PushCandidate candidate, CancellationToken cancellationToken)
    {
        var stored = candidate.Event;
        var due = Environment.TickCount64 + _options.CoalesceMilliseconds;
        foreach (var user in candidate.Members)
        {
            if (user == stored.Sender || (_loaded && !_registered.ContainsKey(user)))
            {
                continue; // no device of theirs could be pushed to: no store reads for them
            }

            var muted = (await accountService.GetMutesAsync(user, cancellationToken)).ContainsKey(stored.Conv);
            var online = await OnlineAsync(user);
            foreach (var device in await accounts.GetDevicesAsync(user, cancellationToken))
            {
                if (device.Revoked)
                {
                    continue;
                }

                if (muted || online.Contains(device.Device))
                {
                    journal.Record(stored.Conv, stored.Seq, new JourneyStep(user, device.Device, Now(), "not pushed", muted ? "muted" : "online: delivered on its socket"));
                    continue;
                }

                var key = (user, device.Device, stored.Conv);
                if (_pending.TryGetValue(key, out var earlier))
                {
                    journal.Record(earlier.Event.Conv, earlier.Event.Seq, new JourneyStep(user, device.Device, Now(), "collapsed", $"into the push for #{stored.Seq}"));
                }

                _pending[key] = _pending.TryGetValue(key, out var pending) ? (stored, pending.Due, pending.Attempt) : (stored, due, 1);
            }
        }
    }

    private async Task SendDueAsync(PushServiceClient client, VapidAuthentication auth, CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        foreach (var (key, (stored, due, attempt)) in _pending.Where(p => p.Value.Due <= now).ToList())
        {
            _pending.Remove(key);
            void Note(string what, string? detail) => journal.Record(stored.Conv, stored.Seq, new JourneyStep(key.User, key.Device, Now(), what, detail));
            if ((await OnlineAsync(key.User)).Contains(key.Device))
            {
                Note("not pushed", "back online: delivered on its socket");
                continue;
            }

            var registration = await accounts.GetPushAsync(key.User, key.Device, cancellationToken) is { } json
                ? JsonSerializer.Deserialize(json, Protocol.SwitchboardJsonContext.Default.PushRegistrationRequest)
                : null;
            if (registration is null)
            {
                Note("not pushed", "no push registration");
                continue;
            }

            var unread = await UnreadAsync(key.User, cancellationToken);
            var payload = new PushPayload(stored.Conv, stored.Seq, stored.Sender, stored.Kind, unread)
            {
                Body = _options.IncludeText && stored.E2ee is null && stored.Body is { } body ? body[..Math.Min(body.Length, _options.MaxTextChars)] : null,
            };
            if (registration is { Kind: "fcm", Token: { } fcmToken })
            {
                await SendThroughAsync("fcm", key, stored, attempt, Note, () => _fcm is { } fcm
                    ? fcm.SendAsync(fcmToken, payload, Topic(stored.Conv), cancellationToken)
                    : Task.FromResult(new PushResult(PushOutcome.Failed, "fcm is not configured")), cancellationToken);
                continue;
            }

            if (registration is { Kind: "apns", Token: { } apnsToken, Topic: { } apnsTopic })
            {
                await SendThroughAsync("apns", key, stored, attempt, Note, () => _apns is { } apns
                    ? apns.SendAsync(apnsToken, apnsTopic, registration.Sandbox == true, payload, Topic(stored.Conv), cancellationToken)
                    : Task.FromResult(new PushResult(PushOutcome.Failed, "apns is not configured")), cancellationToken);
                continue;
            }

            if (registration is not { Kind: "webpush", Endpoint: { } endpoint, Keys: { P256dh: { } p256dh, Auth: { } secret } })
            {
                Note("not pushed", $"no sender for a {registration.Kind} registration");
                continue;
            }

            await SendThroughAsync("webpush", key, stored, attempt, Note, () => SendWebPushAsync(client, auth, endpoint, p256dh, secret, payload, stored.Conv, cancellationToken), cancellationToken);
        }
    }

    /// <summary>One Web Push (aes128gcm, VAPID) through Lib.Net.Http.WebPush, which waits out a 429's Retry-After itself.</summary>
    private static async Task<PushResult> SendWebPushAsync(PushServiceClient client, VapidAuthentication auth, string endpoint, string p256dh, string secret,
        PushPayload payload, string conv, CancellationToken cancellationToken)
    {
        var subscription = new PushSubscription { Endpoint = endpoint };
        subscription.SetKey(PushEncryptionKeyName.P256DH, p256dh);
        subscription.SetKey(PushEncryptionKeyName.Auth, secret);
        var message = new PushMessage(JsonSerializer.Serialize(payload, Protocol.SwitchboardJsonContext.Default.PushPayload))
        {
            Topic = Topic(conv),
            Urgency = PushMessageUrgency.High,
        };
        var host = new Uri(endpoint).Host;
        try
        {
            await client.RequestPushMessageDeliveryAsync(subscription, message, auth, VapidAuthenticationScheme.Vapid, cancellationToken);
            return new(PushOutcome.Accepted, $"webpush to {host}");
        }
        catch (PushServiceClientException ex) when (ex.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Gone)
        {
            return new(PushOutcome.Gone, $"webpush to {host}: {(int)ex.StatusCode}"); // the subscription is gone for good
        }
        catch (PushServiceClientException ex)
        {
            return new(PushOutcome.Failed, $"webpush to {host}: {(int)ex.StatusCode} {ex.Message}");
        }
    }

    /// <summary>Sends through a provider, counts and notes the outcome, and forgets a registration the provider says is gone.</summary>
    private async Task SendThroughAsync(string provider, (string User, int Device, string Conv) key, EventRecord stored, int attempt, Action<string, string?> note,
        Func<Task<PushResult>> send, CancellationToken cancellationToken)
    {
        var (user, device, _) = key;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        PushResult result;
        try
        {
            result = await send();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or System.Security.Cryptography.CryptographicException or JsonException)
        {
            result = new(PushOutcome.Failed, $"{provider}: {ex.Message}");
        }

        var took = $"{System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:0} ms";
        switch (result.Outcome)
        {
            case PushOutcome.Accepted:
                metrics.PushSent.WithLabels(provider, "ok").Inc();
                note("pushed", $"{result.Detail}, accepted in {took}");
                break;
            case PushOutcome.RetryLater when attempt < MaxAttempts && !_pending.ContainsKey(key):
                _pending[key] = (stored, Environment.TickCount64 + (long)result.RetryAfter.TotalMilliseconds, attempt + 1);
                metrics.PushSent.WithLabels(provider, "retry").Inc();
                note("push deferred", $"{result.Detail}: tried again in {result.RetryAfter.TotalSeconds:0} s (try {attempt} of {MaxAttempts}, {took})");
                break;
            case PushOutcome.Gone:
                await accounts.SetPushAsync(user, device, null, cancellationToken);
                await RefreshAsync(user, cancellationToken);
                metrics.PushSent.WithLabels(provider, "gone").Inc();
                note("push refused", $"{result.Detail}: the registration is gone; removed ({took})");
                break;
            default:
                metrics.PushSent.WithLabels(provider, "failed").Inc();
                LogPushFailed(user, device, result.Detail);
                note("push failed", $"{result.Detail} ({took})");
                break;
        }
    }

    /// <summary>After a registration of the user went away: is any other of their devices still registered?</summary>
    public async Task RefreshAsync(string user, CancellationToken cancellationToken)
    {
        foreach (var device in await accounts.GetDevicesAsync(user, cancellationToken))
        {
            if (await accounts.GetPushAsync(user, device.Device, cancellationToken) is not null)
            {
                Registered(user, true);
                return;
            }
        }

        Registered(user, false);
    }

    private long Now() => time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>The user's devices with a live socket here: open, and heard from within a heartbeat (a phone that went
    /// out of coverage keeps its socket open for a while, but needs the push); in a cluster, and the devices the
    /// locator has on other nodes.</summary>
    private async ValueTask<HashSet<int>> OnlineAsync(string user)
    {
        var silentAfter = gateway.Value.HeartbeatSeconds * 1000L;
        var now = Environment.TickCount64;
        HashSet<int> online = [.. sessions.Sessions(user).Where(s => now - s.LastTraffic <= silentAfter).Select(s => s.Device)];
        if (router is not null)
        {
            online.UnionWith(await router.DevicesOnlineElsewhereAsync(user)); // sockets on the other nodes of a cluster
        }

        return online;
    }

    /// <summary>The user's unread messages over all their conversations, for the badge (the first 200 conversations with unread ones).</summary>
    private async Task<long> UnreadAsync(string user, CancellationToken cancellationToken)
    {
        long total = 0;
        var counted = 0;
        foreach (var member in await store.GetMembershipsAsync(user, cancellationToken))
        {
            var last = member.LastVisible;
            var read = Math.Max((await store.GetMemberCursorAsync(new MemberCursorKey(member.Conv, user), cancellationToken))?.Read ?? 0, member.FirstSeq - 1);
            if (read < last && counted++ < 200)
            {
                total += await store.CountUnreadAsync(member.Conv, user, read, last, cancellationToken);
            }
        }

        return total;
    }

    /// <summary>The collapse key: a push replaces the one before it for the same conversation (32 base64url characters at most).</summary>
    private static string Topic(string conv) =>
        System.Buffers.Text.Base64Url.EncodeToString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(conv)).AsSpan(0, 24));

    /// <summary>
    /// Connects to a push service, refusing loopback, private and link-local addresses unless allowed: checked on
    /// the address actually connected to, so a name that resolves differently later cannot get around it.
    /// </summary>
    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var addresses = await Dns.GetHostAddressesAsync(context.DnsEndPoint.Host, cancellationToken);
        var allowed = addresses.Where(a => _options.AllowPrivateEndpoints || !IsPrivate(a)).ToArray();
        if (allowed.Length == 0)
        {
            throw new HttpRequestException($"push endpoint {context.DnsEndPoint.Host} is on a private address");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Loopback, RFC 1918, CGNAT, link-local, unique-local and unspecified addresses.</summary>
    internal static bool IsPrivate(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return true;
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            return address.IsIPv6LinkLocal || address.IsIPv6SiteLocal || address.IsIPv6UniqueLocal;
        }

        var b = address.GetAddressBytes();
        return b[0] == 10 || (b[0] == 172 && b[1] is >= 16 and <= 31) || (b[0] == 192 && b[1] == 168)
            || (b[0] == 169 && b[1] == 254) || (b[0] == 100 && b[1] is >= 64 and <= 127) || b[0] == 0;
    }

    /// <summary>
    /// Signs each request's VAPID token for the endpoint's whole origin, port included (RFC 8292 §2: <c>aud</c> is
    /// the origin); the library leaves a non-default port out, which a push service on one would refuse.
    /// </summary>
    private sealed class VapidAudienceHandler(VapidAuthentication auth) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.RequestUri is { } uri)
            {
                var audience = uri.GetLeftPart(UriPartial.Authority);
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("vapid", auth.GetVapidSchemeAuthenticationHeaderValueParameter(audience));
            }

            return base.SendAsync(request, cancellationToken);
        }
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "The push worker failed a round; it goes on")]
    private partial void LogFailed(Exception exception);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "Push to {User}/{Device} failed: {Reason}")]
    private partial void LogPushFailed(string user, int device, string reason);
}
