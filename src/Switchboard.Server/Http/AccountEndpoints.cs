using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Abuse;
using Switchboard.Server.Accounts;
using Switchboard.Server.Delivery;
using static Switchboard.Server.Http.HttpHelpers;

namespace Switchboard.Server.Http;

/// <summary><c>/v1/accounts</c> and <c>/v1/devices</c>.</summary>
internal static class AccountEndpoints
{
    public static void MapAccountEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/accounts", RegisterAsync);
        app.MapPost("/v1/devices", LinkAsync);
        app.MapGet("/v1/devices", List);
        app.MapDelete("/v1/devices/{device}", Unlink);
        app.MapGet("/v1/settings/privacy", GetPrivacyAsync);
        app.MapPut("/v1/settings/privacy", SetPrivacyAsync);
    }

    private static readonly Dictionary<string, GroupAddPrivacy> Privacies = new(StringComparer.Ordinal)
    {
        ["everyone"] = GroupAddPrivacy.Everyone,
        ["contacts"] = GroupAddPrivacy.Contacts,
        ["nobody"] = GroupAddPrivacy.Nobody,
    };

    private static string NameOf(GroupAddPrivacy privacy) => Privacies.First(p => p.Value == privacy).Key;

    private static async Task<IResult> GetPrivacyAsync(HttpContext context, AccountService accounts)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var privacy = await accounts.GetGroupAddPrivacyAsync(me.User, context.RequestAborted);
        return Json(new PrivacySettings(NameOf(privacy)), SwitchboardJsonContext.Default.PrivacySettings);
    }

    private static async Task<IResult> SetPrivacyAsync(HttpContext context, AccountService accounts, IOptions<AccountsOptions> options)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.PrivacySettings, options.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (body!.GroupsAdd is not { } name || !Privacies.TryGetValue(name, out var privacy))
        {
            return Error(400, ErrorCodes.Invalid, "groups_add must be everyone, contacts or nobody");
        }

        await accounts.SetGroupAddPrivacyAsync(me.User, privacy, context.RequestAborted);
        return Json(new PrivacySettings(name), SwitchboardJsonContext.Default.PrivacySettings);
    }

    private static async Task<IResult> RegisterAsync(HttpContext context, AccountService accounts, PasswordHasher hasher, AbuseGuard abuse, IOptions<AccountsOptions> options)
    {
        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.RegisterRequest, options.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (!Names.IsValidHandle(body!.User))
        {
            return Error(400, ErrorCodes.Invalid, "user must match ^[a-z0-9][a-z0-9_.-]{2,31}$");
        }

        if (body.Password is not { } password || password.Length < Limits.MinPasswordLength || password.Length > options.Value.MaxPasswordLength)
        {
            return Error(400, ErrorCodes.Invalid, $"password must have {Limits.MinPasswordLength} to {options.Value.MaxPasswordLength} characters");
        }

        if (await abuse.RegistrationAsync(AddressKey(context)) is > 0 and var wait)
        {
            return RateLimited(context, wait, "too many accounts made from this address; try again later");
        }

        if (await accounts.UserExistsAsync(body.User!, context.RequestAborted))
        {
            return Error(409, ErrorCodes.Conflict, "that user name is taken");
        }

        var (admitted, hash) = await abuse.HashAsync(() => hasher.Hash(password), context.RequestAborted);
        if (!admitted)
        {
            return RateLimited(context, AbuseGuard.HashRetryAfterMs, "the server is busy checking passwords; try again shortly");
        }

        return await accounts.CreateUserAsync(body.User!, hash, context.RequestAborted)
            ? Json(new RegisterResponse(body.User!), SwitchboardJsonContext.Default.RegisterResponse, 201)
            : Error(409, ErrorCodes.Conflict, "that user name is taken");
    }

    private static async Task<IResult> LinkAsync(HttpContext context, AccountService accounts, PasswordHasher hasher, AbuseGuard abuse, IOptions<AccountsOptions> options)
    {
        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.LinkDeviceRequest, options.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        // A name that is not a handle cannot be an account: refused without a hash, and never a key of a limit.
        if (body!.User is not { } user || !Names.IsValidHandle(user) || body.Password is not { } password || password.Length > options.Value.MaxPasswordLength)
        {
            return Error(401, ErrorCodes.Unauthorized, "wrong user or password");
        }

        var name = string.IsNullOrWhiteSpace(body.Name) ? "device" : body.Name.Trim();
        if (name.Length > 64)
        {
            return Error(400, ErrorCodes.Invalid, "name must have at most 64 characters");
        }

        var address = AddressKey(context);
        if (await abuse.LinkAttemptAsync(address, user) is > 0 and var wait)
        {
            return RateLimited(context, wait, "too many logins; try again later");
        }

        var stored = await accounts.GetPasswordAsync(user, context.RequestAborted);
        // Unknown user and wrong password look the same, and cost the same (a hash is computed either way).
        var (admitted, verified) = await abuse.HashAsync(() => stored is null ? hasher.VerifyNothing(password) : hasher.Verify(password, stored), context.RequestAborted);
        if (!admitted)
        {
            await abuse.LinkDidNotFailAsync(address, user);
            return RateLimited(context, AbuseGuard.HashRetryAfterMs, "the server is busy checking passwords; try again shortly");
        }

        if (!verified)
        {
            return Error(401, ErrorCodes.Unauthorized, "wrong user or password"); // counted as a failure already
        }

        await abuse.LinkDidNotFailAsync(address, user);

        var token = Tokens.Create();
        if (await accounts.LinkDeviceAsync(user, name, Tokens.HashOf(token), options.Value.MaxDevicesPerUser, context.RequestAborted) is not { } device)
        {
            return Error(409, ErrorCodes.Conflict, $"at most {options.Value.MaxDevicesPerUser} devices may be linked; unlink one first");
        }

        return Json(new LinkDeviceResponse(user, device, token), SwitchboardJsonContext.Default.LinkDeviceResponse, 201);
    }

    private static async Task<IResult> List(HttpContext context, AccountService accounts)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        return Json(await accounts.ListDevicesAsync(me.User, me.Device, context.RequestAborted), SwitchboardJsonContext.Default.ListDeviceInfo);
    }

    private static async Task<IResult> Unlink(HttpContext context, string device, AccountService accounts, IDeliveryHub delivery)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!int.TryParse(device, out var number) || !await accounts.UnlinkAsync(me.User, number, context.RequestAborted))
        {
            return Error(404, ErrorCodes.NotFound, "no such device");
        }

        await delivery.CloseDeviceAsync(me.User, number, CloseCodes.Policy, "device unlinked");
        return Results.NoContent();
    }
}
