using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using static Switchboard.Server.Http.HttpHelpers;

namespace Switchboard.Server.Push;

/// <summary><c>PUT|DELETE /v1/devices/current/push</c> and <c>GET /v1/push/vapid</c>.</summary>
internal static class PushEndpoints
{
    public static void MapPushEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPut("/v1/devices/current/push", RegisterAsync);
        app.MapDelete("/v1/devices/current/push", UnregisterAsync);
        app.MapGet("/v1/push/vapid", (VapidKeys keys) => Json(new VapidKey(keys.PublicKey), SwitchboardJsonContext.Default.VapidKey));
        app.MapGet("/v1/conversations/{conv}/messages/{seq}/journey", JourneyAsync);
    }

    /// <summary>
    /// "Where is my message?": for its sender, every current member's devices (the sender's other devices too);
    /// for a recipient, their own. Delivered and read come from the store's cursors; the push steps from the journal.
    /// </summary>
    private static async Task<IResult> JourneyAsync(HttpContext context, string conv, string seq, AccountService accounts, IAccountStore accountStore,
        Messaging.ConversationAccess access, Storage.IMessageStore store, DeliveryJournal journal)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var ct = context.RequestAborted;
        var found = await access.ResolveAsync(conv, me.User, ct);
        if (found.Membership is not { } member)
        {
            return Error(found.ErrorCode == ErrorCodes.NotFound ? 404 : 403, found.ErrorCode ?? ErrorCodes.Forbidden, found.ErrorMessage ?? "not a member of this conversation");
        }

        if (!long.TryParse(seq, System.Globalization.CultureInfo.InvariantCulture, out var number) || number < member.FirstSeq || number > member.LastVisible
            || await store.GetEventAsync(conv, number, ct) is not { } stored)
        {
            return Error(404, ErrorCodes.NotFound, "no such message");
        }

        var users = stored.Sender == me.User ? await access.CurrentMembersAsync(conv, ct) : [me.User];
        var steps = journal.StepsOf(conv, number);
        var devices = new List<JourneyDevice>();
        foreach (var user in users)
        {
            var read = (await store.GetMemberCursorAsync(new Storage.MemberCursorKey(conv, user), ct))?.Read >= number;
            foreach (var device in await accountStore.GetDevicesAsync(user, ct))
            {
                if (device.Revoked || (user == stored.Sender && device.Device == stored.Dev))
                {
                    continue; // the sending device has its ack
                }

                var delivered = (await store.GetDeviceCursorAsync(new Storage.DeviceCursorKey(user, device.Device, conv), ct) ?? 0) >= number;
                devices.Add(new JourneyDevice(user, device.Device, delivered, read,
                    [.. steps.Where(s => (s.User == user && s.Device == device.Device) || s.User == "*").Select(s => new JourneyStepInfo(s.At, s.What, s.Detail))]));
            }
        }

        return Json(new JourneyInfo(conv, number, stored.Sender, stored.Ts, devices), SwitchboardJsonContext.Default.JourneyInfo);
    }

    private static async Task<IResult> RegisterAsync(HttpContext context, AccountService accounts, IAccountStore store, PushDispatcher dispatcher, IOptions<PushOptions> push, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.PushRegistrationRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (Check(body!, push.Value) is { } problem)
        {
            return Error(400, ErrorCodes.Invalid, problem);
        }

        // One registration per device: a new one replaces the old.
        await store.SetPushAsync(me.User, me.Device, System.Text.Json.JsonSerializer.Serialize(body!, SwitchboardJsonContext.Default.PushRegistrationRequest), context.RequestAborted);
        dispatcher.Registered(me.User, true);
        return Results.NoContent();
    }

    private static async Task<IResult> UnregisterAsync(HttpContext context, AccountService accounts, IAccountStore store, PushDispatcher dispatcher)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        await store.SetPushAsync(me.User, me.Device, null, context.RequestAborted);
        await dispatcher.RefreshAsync(me.User, context.RequestAborted);
        return Results.NoContent();
    }

    /// <summary>What is wrong with a registration, or null.</summary>
    internal static string? Check(PushRegistrationRequest request, PushOptions options)
    {
        switch (request.Kind)
        {
            case "webpush":
                if (!Uri.TryCreate(request.Endpoint, UriKind.Absolute, out var endpoint) || request.Endpoint!.Length > 2048
                    || !(endpoint.Scheme == Uri.UriSchemeHttps || (options.AllowPrivateEndpoints && endpoint.Scheme == Uri.UriSchemeHttp)))
                {
                    return "endpoint must be an https URL (at most 2048 characters)";
                }

                if (!options.AllowPrivateEndpoints && System.Net.IPAddress.TryParse(endpoint.Host.Trim('[', ']'), out var address) && PushDispatcher.IsPrivate(address))
                {
                    return "endpoint is on a private address";
                }

                if (FromBase64Url(request.Keys?.P256dh) is not { Length: 65 } key || key[0] != 4 || FromBase64Url(request.Keys?.Auth) is not { Length: 16 })
                {
                    return "keys must hold p256dh (an uncompressed P-256 public key, base64url) and auth (16 bytes, base64url)";
                }

                return null;
            case "fcm":
                return options.Fcm.ServiceAccountFile is null ? "fcm is not configured on this server (Switchboard:Push:Fcm:ServiceAccountFile)"
                    : string.IsNullOrWhiteSpace(request.Token) || request.Token.Length > 4096 ? "token must be an FCM registration token" : null;
            case "apns":
                return !options.Apns.Configured ? "apns is not configured on this server (Switchboard:Push:Apns)"
                    : string.IsNullOrWhiteSpace(request.Token) || request.Token.Length > 200 || !request.Token.All(char.IsAsciiHexDigit) ? "token must be an APNs device token (hex)"
                    : string.IsNullOrWhiteSpace(request.Topic) || request.Topic.Length > 255 ? "topic must be the app's bundle id"
                    : null;
            default:
                return "kind must be webpush, fcm or apns";
        }
    }
}
