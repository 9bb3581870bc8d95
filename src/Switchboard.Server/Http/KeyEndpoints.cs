using System.Text.Json;
using Microsoft.Extensions.Options;
using NSec.Cryptography;
using Switchboard.Protocol;
using Switchboard.Server.Abuse;
using Switchboard.Server.Accounts;
using static Switchboard.Server.Http.HttpHelpers;

namespace Switchboard.Server.Http;

/// <summary>
/// The key directory for end-to-end encryption: each device publishes its identity key (Ed25519) with an X25519
/// identity key it signs, a signed prekey
/// (X25519, signed by the identity key; the signature is checked here) and one-time prekeys; a peer fetches one
/// bundle per current device of a user, using up one one-time prekey of each (the signed prekey alone once none is
/// left). The server only stores and hands out public keys.
/// </summary>
internal static class KeyEndpoints
{
    /// <summary>One-time prekeys a device may keep on the server, and add in one upload.</summary>
    public const int MaxOneTimePrekeys = 1000;

    /// <summary>What an identity key signs before its X25519 identity key (so no other signature of it can pass for this one).</summary>
    public static ReadOnlySpan<byte> IdentityDhContext => "switchboard identity dh"u8;

    public static void MapKeyEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPut("/v1/devices/current/keys", UploadAsync);
        app.MapGet("/v1/devices/current/keys", CountAsync);
        app.MapGet("/v1/users/{user}/keys", FetchAsync);
    }

    private static async Task<IResult> UploadAsync(HttpContext context, AccountService accounts, IAccountStore store, IOptions<AccountsOptions> limits,
        Storage.IMessageStore messages, Messaging.Sequencer sequencer)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.KeyUpload, limits.Value.MaxRequestBodyBytes * 4);
        if (error is not null)
        {
            return error;
        }

        var stored = await store.GetDeviceKeysAsync(me.User, me.Device, context.RequestAborted) is { } json
            ? JsonSerializer.Deserialize(json, SwitchboardJsonContext.Default.KeyUpload)
            : null;
        var identity = body!.IdentityKey ?? stored?.IdentityKey;
        var sameIdentity = body.IdentityKey is null || body.IdentityKey == stored?.IdentityKey;
        var identityDh = body.IdentityDh ?? (sameIdentity ? stored?.IdentityDh : null); // a new identity brings its own
        var signed = body.SignedPrekey ?? (sameIdentity ? stored?.SignedPrekey : null);
        if (identity is null || FromBase64Url(identity) is not { Length: 32 } identityBytes)
        {
            return Error(400, ErrorCodes.Invalid, "identity_key must be an Ed25519 public key (32 bytes, base64url)");
        }

        var identityKey = PublicKey.Import(SignatureAlgorithm.Ed25519, identityBytes, KeyBlobFormat.RawPublicKey);
        if (identityDh is null || FromBase64Url(identityDh.Key) is not { Length: 32 } dhBytes || FromBase64Url(identityDh.Signature) is not { Length: 64 } dhSignature
            || !SignatureAlgorithm.Ed25519.Verify(identityKey, [.. IdentityDhContext, .. dhBytes], dhSignature))
        {
            return Error(400, ErrorCodes.Invalid, "identity_dh must be an X25519 public key (32 bytes) with the identity key's Ed25519 signature over \"switchboard identity dh\" and it (64 bytes)");
        }

        if (signed is null || FromBase64Url(signed.Key) is not { Length: 32 } prekey || FromBase64Url(signed.Signature) is not { Length: 64 } signature
            || !SignatureAlgorithm.Ed25519.Verify(identityKey, prekey, signature))
        {
            return Error(400, ErrorCodes.Invalid, "signed_prekey must be an X25519 public key (32 bytes) with the identity key's Ed25519 signature over it (64 bytes)");
        }

        var oneTime = body.OneTimePrekeys ?? [];
        if (oneTime.Any(k => k.Id < 0 || FromBase64Url(k.Key) is not { Length: 32 }) || oneTime.Select(k => k.Id).Distinct().Count() != oneTime.Count)
        {
            return Error(400, ErrorCodes.Invalid, "one_time_prekeys must be X25519 public keys (32 bytes) with distinct ids ≥ 0");
        }

        if (oneTime.Count + await store.CountOneTimeKeysAsync(me.User, me.Device, context.RequestAborted) > MaxOneTimePrekeys)
        {
            return Error(413, ErrorCodes.TooLarge, $"a device keeps at most {MaxOneTimePrekeys} one-time prekeys on the server");
        }

        var keys = JsonSerializer.Serialize(new KeyUpload(identity, signed, null) { IdentityDh = identityDh }, SwitchboardJsonContext.Default.KeyUpload);
        await store.SetDeviceKeysAsync(me.User, me.Device, keys, [.. oneTime.Select(k => (k.Id, k.Key))], context.RequestAborted);
        if (stored?.IdentityKey is { } previous && previous != identity)
        {
            await TellIdentityChangedAsync(me, messages, sequencer, context.RequestAborted);
        }

        return Json(new KeyCount(await store.CountOneTimeKeysAsync(me.User, me.Device, context.RequestAborted)), SwitchboardJsonContext.Default.KeyCount);
    }

    /// <summary>
    /// A device's identity key changed: a <c>system</c> event (<c>identity_changed</c>) in every conversation its user
    /// is in, so every peer sees that the safety number changed. Durable before the upload is answered.
    /// </summary>
    private static async Task TellIdentityChangedAsync(DeviceIdentity me, Storage.IMessageStore messages, Messaging.Sequencer sequencer, CancellationToken cancellationToken)
    {
        var notices = new List<Messaging.NoticeCommand>();
        foreach (var membership in await messages.GetMembershipsAsync(me.User, cancellationToken))
        {
            if (!membership.IsCurrent)
            {
                continue;
            }

            var notice = new Messaging.NoticeCommand
            {
                Origin = new Messaging.HttpOrigin(me.User, me.Device),
                Conv = membership.Conv,
                System = new SystemInfo(SystemOps.IdentityChanged, Users: [me.User]) { Device = me.Device },
                Completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
            };
            await sequencer.SubmitAsync(notice, cancellationToken);
            notices.Add(notice);
        }

        await Task.WhenAll(notices.Select(n => n.Completion!.Task)).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
    }

    private static async Task<IResult> CountAsync(HttpContext context, AccountService accounts, IAccountStore store)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        return Json(new KeyCount(await store.CountOneTimeKeysAsync(me.User, me.Device, context.RequestAborted)), SwitchboardJsonContext.Default.KeyCount);
    }

    private static async Task<IResult> FetchAsync(HttpContext context, string user, AccountService accounts, IAccountStore store, AbuseGuard abuse,
        Delivery.ILocalSessions sessions, IOptions<AccountsOptions> limits, Hosting.SwitchboardMetrics metrics)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        // Each fetch uses up one-time prekeys: bounded per caller, so no one drains another's supply.
        if (await abuse.KeyFetchAsync(me.User) is > 0 and var wait)
        {
            return RateLimited(context, wait, "too many key fetches; try again later");
        }

        if (!Names.IsValidHandle(user) || !await accounts.UserExistsAsync(user, context.RequestAborted))
        {
            return Error(404, ErrorCodes.NotFound, "no such user");
        }

        int? only = null;
        if (context.Request.Query["device"] is { Count: > 0 } wanted)
        {
            if (!int.TryParse(wanted[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) || number < 1)
            {
                return Error(400, ErrorCodes.Invalid, "device must be a positive integer");
            }

            only = number;
        }

        var bundles = new List<KeyBundle>();
        foreach (var device in await store.GetDevicesAsync(user, context.RequestAborted))
        {
            if ((only is { } one && device.Device != one) || device.Revoked || (user == me.User && device.Device == me.Device)
                || await store.GetDeviceKeysAsync(user, device.Device, context.RequestAborted) is not { } json
                || JsonSerializer.Deserialize(json, SwitchboardJsonContext.Default.KeyUpload) is not { IdentityKey: { } identity, SignedPrekey: { } signed, IdentityDh: { } identityDh })
            {
                continue; // no keys published (yet): the caller says the device cannot be reached encrypted
            }

            var (oneTime, left) = await store.TakeOneTimeKeyAsync(user, device.Device, context.RequestAborted);
            if (left < limits.Value.LowPrekeyCount)
            {
                // The owner's device is told on its socket, if it has one here, to upload more (also when none was left).
                var frame = JsonSerializer.SerializeToUtf8Bytes(new KeysLowFrame(left), SwitchboardJsonContext.Default.KeysLowFrame);
                metrics.E2eePrekeysLow.Inc();
                foreach (var session in sessions.Sessions(user).Where(s => s.Device == device.Device))
                {
                    session.Send(frame);
                }
            }

            bundles.Add(new KeyBundle(user, device.Device, identity, signed) { IdentityDh = identityDh, OneTimePrekey = oneTime is { } k ? new OneTimePrekey(k.Id, k.Key) : null });
        }

        return Json(bundles, SwitchboardJsonContext.Default.ListKeyBundle);
    }
}
