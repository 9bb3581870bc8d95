using System.Net.Http.Json;
using System.Text.Json;
using Switchboard.Client.E2ee;
using Switchboard.Protocol;

namespace Switchboard.Client;

public sealed partial class SwitchboardClient
{
    private EndToEnd? _e2e;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _reseals = new(StringComparer.Ordinal);

    /// <summary>How often one send is encrypted again for a changed device set before it fails.</summary>
    private const int MaxReseals = 5;

    /// <summary>Whether this client encrypts end to end (<see cref="SwitchboardClientOptions.E2eeStore"/> is set).</summary>
    public bool EndToEndEncrypted => _e2e is not null;

    private IE2eeStore E2eeStore => _options.E2eeStore!;

    /// <summary>This device's end-to-end state, for tests that play an attacker with it.</summary>
    internal EndToEnd? EndToEnd => _e2e;

    private EndToEnd InitEndToEnd()
    {
        var e2e = new EndToEnd(_options.E2eeStore!, FetchBundlesAsync);
        e2e.IdentityChanged += (user, device) => _events.Writer.TryWrite(new IdentityChanged(user, device));
        return e2e;
    }

    /// <summary>
    /// Publishes this device's keys if it has none yet (identity, signed prekey, one-time prekeys). Done by
    /// <see cref="ConnectAsync"/> when end-to-end encryption is on; call it to publish without connecting.
    /// </summary>
    public async Task PublishKeysAsync(CancellationToken cancellationToken = default)
    {
        if (_e2e is not { } e2e)
        {
            return;
        }

        if (await e2e.NewKeysAsync() is { } upload)
        {
            await SendAsync(HttpMethod.Put, "/v1/devices/current/keys", upload, SwitchboardJsonContext.Default.KeyUpload, SwitchboardJsonContext.Default.KeyCount, cancellationToken);
        }
        else
        {
            if ((await GetAsync("/v1/devices/current/keys", SwitchboardJsonContext.Default.KeyCount, cancellationToken)).OneTimePrekeys < EndToEnd.OneTimePrekeysPerUpload / 4)
            {
                await TopUpKeysAsync(cancellationToken); // used up while this device was away
            }

            if (await e2e.RotateSignedPrekeyAsync(_options.Clock.GetUtcNow()) is { } rotated)
            {
                await SendAsync(HttpMethod.Put, "/v1/devices/current/keys", rotated, SwitchboardJsonContext.Default.KeyUpload, SwitchboardJsonContext.Default.KeyCount, cancellationToken);
            }
        }
    }

    private async Task TopUpKeysAsync(CancellationToken cancellationToken)
    {
        try
        {
            var upload = await _e2e!.MoreOneTimeKeysAsync(EndToEnd.OneTimePrekeysPerUpload);
            await SendAsync(HttpMethod.Put, "/v1/devices/current/keys", upload, SwitchboardJsonContext.Default.KeyUpload, SwitchboardJsonContext.Default.KeyCount, cancellationToken);
        }
        catch (Exception ex) when (ex is SwitchboardException or HttpRequestException or OperationCanceledException)
        {
            // told again at the next fetch that finds them low
        }
    }

    /// <summary>The key bundles of a user's devices (one device when <paramref name="device"/> is given); each fetch uses up one-time prekeys.</summary>
    private Task<List<KeyBundle>> FetchBundlesAsync(string user, int? device, CancellationToken cancellationToken) =>
        GetAsync($"/v1/users/{Uri.EscapeDataString(user)}/keys{(device is { } d ? $"?device={d}" : "")}", SwitchboardJsonContext.Default.ListKeyBundle, cancellationToken);

    /// <summary>The devices a conversation's sends were last made for (the server says when they change).</summary>
    private async Task<List<DeviceAddress>> KnownDevicesAsync(string conv) =>
        await E2eeStore.GetAsync("devices", conv) is { } bytes ? JsonSerializer.Deserialize(bytes, E2eeJsonContext.Default.ListDeviceAddress) ?? [] : [];

    /// <summary>
    /// The payload for the devices; in a group, sender keys that do not fit in it are first sent in <c>key</c> events
    /// (each acked before the next), so they are in the conversation before the message that needs them.
    /// </summary>
    private async Task<JsonElement> SealAsync(Sealing sealing, IReadOnlyList<DeviceAddress> devices, CancellationToken cancellationToken)
    {
        var content = new Content { Body = sealing.Text };
        if (!Names.IsGroup(sealing.Conv))
        {
            return await _e2e!.SealDirectAsync(devices, content, cancellationToken);
        }

        var keys = new List<JsonElement>();
        var e2ee = await _e2e!.SealGroupAsync(sealing.Conv, devices, content, cancellationToken, keys);
        foreach (var handout in keys)
        {
            await SendFrameAsync(new ClientFrame { T = FrameTypes.Send, Conv = sealing.Conv, Kind = EventKinds.Key, E2ee = handout }, cancellationToken);
        }

        return e2ee;
    }

    private static ClientFrame SealedFrame(string cid, Sealing sealing, JsonElement e2ee, long? replyTo) => sealing.Kind == EventKinds.Edit
        ? new ClientFrame { T = FrameTypes.Edit, Cid = cid, Conv = sealing.Conv, Target = sealing.Target, E2ee = e2ee }
        : new ClientFrame { T = FrameTypes.Send, Cid = cid, Conv = sealing.Conv, Kind = sealing.Kind, E2ee = e2ee, ReplyTo = replyTo };

    /// <summary>Encrypts and sends; a <c>devices_changed</c> answer encrypts again for the devices it lists, same cid.</summary>
    private async Task<AckFrame> SendSealedAsync(Sealing sealing, long? replyTo, CancellationToken cancellationToken)
    {
        var cid = Guid.NewGuid().ToString();
        Task<AckFrame> acked;
        // Encrypting may fetch keys first: sends are sealed and queued one at a time, so they keep the order they
        // were made in (reseals too).
        await _sealOrder.WaitAsync(cancellationToken);
        try
        {
            await E2eeStore.SetAsync("sealing", cid, JsonSerializer.SerializeToUtf8Bytes(sealing, E2eeJsonContext.Default.Sealing));
            try
            {
                var e2ee = await SealAsync(sealing, await KnownDevicesAsync(sealing.Conv), cancellationToken);
                acked = await EnqueueAsync(SealedFrame(cid, sealing, e2ee, replyTo), cancellationToken);
            }
            catch (Exception)
            {
                await E2eeStore.DeleteAsync("sealing", cid); // never sent: nothing to seal again
                throw;
            }
        }
        finally
        {
            _sealOrder.Release();
        }

        return await acked;
    }

    private readonly SemaphoreSlim _sealOrder = new(1, 1);

    /// <summary>A <c>devices_changed</c> for one of this client's encrypted sends; false when it is not one.</summary>
    private async ValueTask<bool> OnDevicesChangedAsync(ErrorFrame error, CancellationToken stop)
    {
        if (_e2e is null || error.Ref is not { } cid || await E2eeStore.GetAsync("sealing", cid) is not { } stored)
        {
            return false;
        }

        _ = ResealAsync(cid, JsonSerializer.Deserialize(stored, E2eeJsonContext.Default.Sealing)!, error, stop);
        return true;
    }

    private async Task ResealAsync(string cid, Sealing sealing, ErrorFrame error, CancellationToken stop)
    {
        try
        {
            if (_reseals.AddOrUpdate(cid, 1, (_, n) => n + 1) > MaxReseals)
            {
                throw new SwitchboardException(error.Code, error.Message);
            }

            var devices = error.Recipients?.ToList() ?? [];
            await _sealOrder.WaitAsync(stop);
            try
            {
                await E2eeStore.SetAsync("devices", sealing.Conv, JsonSerializer.SerializeToUtf8Bytes(devices, E2eeJsonContext.Default.ListDeviceAddress));
                var outbox = await _state.LoadOutboxAsync();
                var pending = outbox.FirstOrDefault(p => p.Cid == cid);
                var replyTo = pending is null ? null : JsonSerializer.Deserialize(pending.Frame, SwitchboardJsonContext.Default.ClientFrame)?.ReplyTo;
                var json = JsonSerializer.Serialize(SealedFrame(cid, sealing, await SealAsync(sealing, devices, stop), replyTo), SwitchboardJsonContext.Default.ClientFrame);
                await _state.RemovePendingAsync(cid);
                await _state.AddPendingAsync(new PendingSend(cid, json, pending?.Order ?? Interlocked.Increment(ref _order)));
                await SendRawAsync(json, stop);
            }
            finally
            {
                _sealOrder.Release();
            }
        }
        catch (Exception ex) when (ex is SwitchboardException or HttpRequestException or DecryptionException)
        {
            await _state.RemovePendingAsync(cid);
            await E2eeStore.DeleteAsync("sealing", cid);
            _reseals.TryRemove(cid, out _);
            if (_waiting.TryRemove(cid, out var waiter))
            {
                waiter.TrySetException(ex as SwitchboardException ?? new SwitchboardException(EndToEnd.NoKeys, ex.Message));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>An encrypted send was acked: its text is kept by seq, the only copy this device will have.</summary>
    private async ValueTask OnSealedAckAsync(AckFrame ack)
    {
        if (_e2e is null || await E2eeStore.GetAsync("sealing", ack.Cid) is not { } stored)
        {
            return;
        }

        var sealing = JsonSerializer.Deserialize(stored, E2eeJsonContext.Default.Sealing)!;
        await E2eeStore.SetAsync("text", TextKey(ack.Conv, ack.Seq), Text.Utf8(sealing.Text));
        await E2eeStore.DeleteAsync("sealing", ack.Cid);
        _reseals.TryRemove(ack.Cid, out _);
    }

    private static string TextKey(string conv, long seq) => $"{conv}|{seq.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>A received event as the application gets it: encrypted ones decrypted (or the reason they could not be).</summary>
    private async ValueTask<MessageReceived> OpenAsync(MsgFrame message)
    {
        if (message.E2ee is null || _e2e is null)
        {
            return new MessageReceived(message) { Text = message.Body };
        }

        if (await E2eeStore.GetAsync("text", TextKey(message.Conv, message.Seq)) is { } known)
        {
            return new MessageReceived(message) { Text = System.Text.Encoding.UTF8.GetString(known) }; // decrypted before (a replay of a seq)
        }

        try
        {
            var content = await _e2e.OpenAsync(message, User!, Device!.Value);
            if (content.Body is { } body)
            {
                await E2eeStore.SetAsync("text", TextKey(message.Conv, message.Seq), Text.Utf8(body));
            }

            return new MessageReceived(message) { Text = content.Body };
        }
        catch (DecryptionException ex) when (message.Kind != EventKinds.Key)
        {
            return new MessageReceived(message) { DecryptionError = ex.Message };
        }
        catch (DecryptionException)
        {
            return new MessageReceived(message); // a key hand-out this device cannot use: nothing to show, nothing to ask
        }
    }

    /// <summary>
    /// The text of a message as this device can read it: the body of a plain one; for an encrypted one, the text kept
    /// when it was sent or decrypted here, else decrypted now from the page (history of a device that was not
    /// connected when it came). Null when this device cannot read it: sent before it was linked, or by itself
    /// from another client state.
    /// </summary>
    public async Task<string?> ReadableTextAsync(MsgFrame message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.E2ee is null || _e2e is null)
        {
            return message.Body;
        }

        if (await E2eeStore.GetAsync("text", TextKey(message.Conv, message.Seq)) is { } known)
        {
            return System.Text.Encoding.UTF8.GetString(known);
        }

        if (User is null || Device is null || (message.From == User && message.Dev == Device))
        {
            return null;
        }

        var opened = await OpenAsync(message);
        return opened.Text;
    }

    /// <summary>
    /// The safety number of this user and <paramref name="user"/> (docs/e2ee.md): 60 digits the two compare out of
    /// band; it covers the identity keys of the devices this device has sessions with. Throws
    /// <see cref="SwitchboardException"/> <c>no_session</c> before any session with the user's devices.
    /// </summary>
    public async Task<string> GetSafetyNumberAsync(string user, CancellationToken cancellationToken = default)
    {
        if (_e2e is null)
        {
            throw new SwitchboardException("e2ee_off", "end-to-end encryption is not on for this client");
        }

        var me = User ?? throw new SwitchboardException("not_connected", "connect first: the client learns its user and device from the server");
        var theirs = await _e2e.KnownIdentitiesAsync(user);
        if (theirs.Count == 0)
        {
            throw new SwitchboardException(E2eeErrorCodes.NoSession, $"no session with {user} yet: exchange a message first");
        }

        var mine = await _e2e.KnownIdentitiesAsync(me);
        mine[Device!.Value] = (await _e2e.IdentityAsync())!.SigningPublic;
        return SafetyNumbers.Combine(SafetyNumbers.Digits(me, mine.Values), SafetyNumbers.Digits(user, theirs.Values));
    }

    // Resends made, by (conv, seq, user, device): each is answered once, however often it is asked.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, long, string, int), byte> _resent = new();

    /// <summary>
    /// A device could not decrypt a message this device sent: it is sent to that device alone, on a new session
    /// (the old one is dropped: the peer lost it, or it went wrong), if this device still has its text.
    /// </summary>
    private async Task ResendAsync(DecryptFailedFrame failed, CancellationToken stop)
    {
        try
        {
            if (_resent.Count > 10_000 || !_resent.TryAdd((failed.Conv, failed.Seq, failed.User, failed.Device), 0)
                || await E2eeStore.GetAsync("text", TextKey(failed.Conv, failed.Seq)) is not { } text)
            {
                return;
            }

            var device = new DeviceAddress(failed.User, failed.Device);
            await _e2e!.ResetSessionAsync(device);
            var to = await _e2e.SealPairwiseAsync([device], new Content { Body = System.Text.Encoding.UTF8.GetString(text) }, stop);
            var e2ee = JsonSerializer.SerializeToElement(new System.Text.Json.Nodes.JsonObject { ["v"] = 1, ["to"] = new System.Text.Json.Nodes.JsonArray([.. to]) });
            await SendTransientAsync(new ClientFrame { T = FrameTypes.Resend, Conv = failed.Conv, Seq = failed.Seq, User = failed.User, Device = failed.Device, E2ee = e2ee }, stop);
        }
        catch (Exception ex) when (ex is SwitchboardException or HttpRequestException or DecryptionException or OperationCanceledException)
        {
            // the peer asks again on its next failure
        }
    }

    /// <summary>A message sent again for this device: decrypted, kept, and handed over as <see cref="MessageDecrypted"/>.</summary>
    private async ValueTask OnResendAsync(ResendFrame resend, CancellationToken stop)
    {
        if (User is not { } me || Device is not { } device || await E2eeStore.GetAsync("text", TextKey(resend.Conv, resend.Seq)) is not null)
        {
            return; // readable already
        }

        var frame = new MsgFrame { Conv = resend.Conv, Seq = resend.Seq, Id = "", Ts = 0, From = resend.From, Dev = resend.Dev, Kind = EventKinds.Text, Cid = "", E2ee = resend.E2ee };
        try
        {
            if ((await _e2e!.OpenAsync(frame, me, device)).Body is { } body)
            {
                await E2eeStore.SetAsync("text", TextKey(resend.Conv, resend.Seq), Text.Utf8(body));
                await _events.Writer.WriteAsync(new MessageDecrypted(resend.Conv, resend.Seq, resend.From, body), stop);
            }
        }
        catch (DecryptionException)
        {
            // not for this device (a sibling's), or broken again: nothing to hand over
        }
    }

    /// <summary>Over HTTP: encrypts, posts, and on 409 <c>devices_changed</c> encrypts again for the devices listed (same cid).</summary>
    private async Task<AckFrame> PostSealedAsync(string conv, string body, string cid, long? replyTo, CancellationToken cancellationToken)
    {
        // No outbox over HTTP: the caller retries with the same cid; only the text is kept, once it is acked.
        var sealing = new Sealing(conv, EventKinds.Text, body, null);
        var devices = await KnownDevicesAsync(conv);
        for (var attempt = 0; ; attempt++)
        {
            var frame = new ClientFrame { Cid = cid, Kind = EventKinds.Text, E2ee = await SealAsync(sealing, devices, cancellationToken), ReplyTo = replyTo };
            using var response = await _http.PostAsJsonAsync(Api($"/v1/conversations/{Uri.EscapeDataString(conv)}/messages"), frame, SwitchboardJsonContext.Default.ClientFrame, cancellationToken);
            if ((int)response.StatusCode == 409 && attempt < MaxReseals
                && await response.Content.ReadFromJsonAsync(SwitchboardJsonContext.Default.ErrorFrame, cancellationToken) is { Code: ErrorCodes.DevicesChanged, Recipients: { } recipients })
            {
                devices = [.. recipients];
                await E2eeStore.SetAsync("devices", conv, JsonSerializer.SerializeToUtf8Bytes(devices, E2eeJsonContext.Default.ListDeviceAddress));
                continue;
            }

            await EnsureAsync(response, cancellationToken);
            var ack = (await response.Content.ReadFromJsonAsync(SwitchboardJsonContext.Default.AckFrame, cancellationToken))!;
            await E2eeStore.SetAsync("text", TextKey(ack.Conv, ack.Seq), Text.Utf8(body));
            return ack;
        }
    }
}
