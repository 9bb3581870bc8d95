using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Abuse;
using Switchboard.Server.Accounts;
using Switchboard.Server.Fanout;
using Switchboard.Server.Messaging;
using static Switchboard.Server.Http.HttpHelpers;

namespace Switchboard.Server.Http;

/// <summary>
/// <c>/v1/groups</c>: every change goes through the group-commit writer as a <c>system</c> event and is answered
/// only once it is durable.
/// </summary>
internal static class GroupEndpoints
{
    private const int MaxNameLength = 100;

    public static void MapGroupEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/groups", CreateAsync);
        app.MapGet("/v1/groups/{conv}", Get);
        app.MapPatch("/v1/groups/{conv}", RenameAsync);
        app.MapPost("/v1/groups/{conv}/members", AddAsync);
        app.MapDelete("/v1/groups/{conv}/members/{user}", RemoveAsync);
        app.MapPut("/v1/groups/{conv}/members/{user}", SetRoleAsync);
        app.MapPost("/v1/groups/{conv}/join", JoinAsync);
        app.MapGet("/v1/invites", InvitesAsync);
    }

    private static async Task<IResult> CreateAsync(HttpContext context, AccountService accounts, Sequencer sequencer, AbuseGuard abuse, IOptions<FanoutOptions> fanout, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.CreateGroupRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (CheckName(body!.Name) is { } bad)
        {
            return bad;
        }

        var members = body.Members ?? [];
        var others = members.Distinct(StringComparer.Ordinal).Count(u => u != me.User);
        if (others + 1 > fanout.Value.MaxGroupMembers)
        {
            return Error(400, ErrorCodes.TooLarge, $"a group has at most {fanout.Value.MaxGroupMembers} members");
        }

        var wait = await abuse.GroupCreateAsync(me.User);
        if (wait == 0)
        {
            wait = await abuse.GroupAddsAsync(me.User, others);
        }

        if (wait > 0)
        {
            return RateLimited(context, wait, "too many groups made or members added; try again later");
        }

        // Those whose privacy does not let this user add them are invited instead.
        var (allowed, invited) = await accounts.ConsentAsync(me.User, members, context.RequestAborted);
        var command = new GroupCommand
        {
            Origin = new HttpOrigin(me.User, me.Device),
            Conv = "",
            Op = GroupOp.Create,
            Name = body.Name!.Trim(),
            Users = [.. allowed],
            MaxMembers = fanout.Value.MaxGroupMembers,
            Completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
        };
        return await InviteTheRestAsync(await RunAsync(sequencer, command, 201, context.RequestAborted), command, invited, accounts, context.RequestAborted);
    }

    /// <summary>After a create or an add that went through: invites for those not added, named in the answer.</summary>
    private static async Task<IResult> InviteTheRestAsync(IResult result, GroupCommand command, List<string> invited, AccountService accounts, CancellationToken cancellationToken)
    {
        if (command.ErrorCode is not null || command.Group is not { } group || invited.Count == 0)
        {
            return result;
        }

        invited = [.. invited.Where(u => !group.Current.ContainsKey(u))]; // a member already needs no invite

        await accounts.AddInvitesAsync(command.Origin.User, group.Conv, invited, cancellationToken);
        return Json(group.ToInfo() with { Invited = invited }, SwitchboardJsonContext.Default.GroupInfo, ((IStatusCodeHttpResult)result).StatusCode ?? 200);
    }

    private static async Task<IResult> JoinAsync(HttpContext context, string conv, AccountService accounts, Sequencer sequencer, IOptions<FanoutOptions> fanout)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!Names.IsValidGroupId(conv) || await accounts.TakeInviteAsync(me.User, conv, context.RequestAborted) is null)
        {
            return Error(403, ErrorCodes.Forbidden, "no invite to this group, or it expired");
        }

        return await RunAsync(sequencer, Command(me, conv, GroupOp.Join, maxMembers: fanout.Value.MaxGroupMembers), 200, context.RequestAborted);
    }

    private static async Task<IResult> InvitesAsync(HttpContext context, AccountService accounts, GroupDirectory groups)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var rows = new List<InviteInfo>();
        foreach (var invite in await accounts.GetInvitesAsync(me.User, context.RequestAborted))
        {
            if (await groups.GetAsync(invite.Conv, context.RequestAborted) is { } group)
            {
                rows.Add(new InviteInfo(invite.Conv, group.Name, invite.From, invite.Ts, invite.Expires));
            }
        }

        return Json(rows, SwitchboardJsonContext.Default.ListInviteInfo);
    }

    private static async Task<IResult> Get(HttpContext context, string conv, AccountService accounts, GroupDirectory groups)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!Names.IsValidGroupId(conv) || await groups.GetAsync(conv, context.RequestAborted) is not { } group)
        {
            return Error(404, ErrorCodes.NotFound, "no such group");
        }

        return group.Current.ContainsKey(me.User)
            ? Json(group.ToInfo(), SwitchboardJsonContext.Default.GroupInfo)
            : Error(403, ErrorCodes.Forbidden, "not a member of this group");
    }

    private static async Task<IResult> RenameAsync(HttpContext context, string conv, AccountService accounts, Sequencer sequencer, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.RenameGroupRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (CheckName(body!.Name) is { } bad)
        {
            return bad;
        }

        return await RunAsync(sequencer, Command(me, conv, GroupOp.Rename, name: body.Name!.Trim()), 200, context.RequestAborted);
    }

    private static async Task<IResult> AddAsync(HttpContext context, string conv, AccountService accounts, Sequencer sequencer, AbuseGuard abuse, IOptions<FanoutOptions> fanout, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.AddMembersRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (body!.Users is not { Length: > 0 } users)
        {
            return Error(400, ErrorCodes.Invalid, "users must list at least one user");
        }

        if (users.Length > fanout.Value.MaxGroupMembers)
        {
            return Error(400, ErrorCodes.TooLarge, $"a group has at most {fanout.Value.MaxGroupMembers} members");
        }

        if (await abuse.GroupAddsAsync(me.User, users.Distinct(StringComparer.Ordinal).Count()) is > 0 and var wait)
        {
            return RateLimited(context, wait, "too many members added to groups; try again later");
        }

        var (allowed, invited) = await accounts.ConsentAsync(me.User, users, context.RequestAborted);
        var command = Command(me, conv, GroupOp.Add, [.. allowed], maxMembers: fanout.Value.MaxGroupMembers);
        return await InviteTheRestAsync(await RunAsync(sequencer, command, 200, context.RequestAborted), command, invited, accounts, context.RequestAborted);
    }

    private static async Task<IResult> RemoveAsync(HttpContext context, string conv, string user, AccountService accounts, Sequencer sequencer)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var result = await RunAsync(sequencer, Command(me, conv, GroupOp.Remove, [user]), 200, context.RequestAborted);
        return result is IStatusCodeHttpResult { StatusCode: 200 } ? Results.NoContent() : result;
    }

    private static async Task<IResult> SetRoleAsync(HttpContext context, string conv, string user, AccountService accounts, Sequencer sequencer, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var (body, error) = await ReadAsync(context, SwitchboardJsonContext.Default.RoleRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if (body!.Role is not (Roles.Admin or Roles.Member))
        {
            return Error(400, ErrorCodes.Invalid, "role must be admin or member");
        }

        return await RunAsync(sequencer, Command(me, conv, GroupOp.SetRole, [user], role: body.Role), 200, context.RequestAborted);
    }

    private static GroupCommand Command(DeviceIdentity me, string conv, GroupOp op, string[]? users = null, string? name = null, string? role = null, int maxMembers = 0) => new()
    {
        Origin = new HttpOrigin(me.User, me.Device),
        Conv = conv,
        Op = op,
        Users = users ?? [],
        Name = name,
        Role = role,
        MaxMembers = maxMembers,
        Completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
    };

    private static IResult? CheckName(string? name) =>
        string.IsNullOrWhiteSpace(name) || name.Trim().Length > MaxNameLength
            ? Error(400, ErrorCodes.Invalid, $"name must have 1 to {MaxNameLength} characters")
            : null;

    /// <summary>Submits the change, waits until it is durable, and answers as the writer decided.</summary>
    private static async Task<IResult> RunAsync(Sequencer sequencer, GroupCommand command, int successStatus, CancellationToken cancellationToken)
    {
        if (!Names.IsValidGroupId(command.Conv) && command.Op != GroupOp.Create)
        {
            return Error(404, ErrorCodes.NotFound, "no such group");
        }

        await sequencer.SubmitAsync(command, cancellationToken);
        await command.Completion!.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        return command.ErrorCode switch
        {
            null => Json(command.Group!.ToInfo(), SwitchboardJsonContext.Default.GroupInfo, successStatus),
            ErrorCodes.NotFound => Error(404, ErrorCodes.NotFound, command.ErrorMessage!),
            ErrorCodes.Forbidden => Error(403, ErrorCodes.Forbidden, command.ErrorMessage!),
            ErrorCodes.TooLarge => Error(400, ErrorCodes.TooLarge, command.ErrorMessage!),
            ErrorCodes.Invalid => Error(400, ErrorCodes.Invalid, command.ErrorMessage!),
            _ => Error(503, ErrorCodes.Unavailable, command.ErrorMessage!),
        };
    }
}
