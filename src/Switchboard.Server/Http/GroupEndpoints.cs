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

        var wait = abuse.GroupCreate(me.User);
        if (wait == 0)
        {
            wait = abuse.GroupAdds(me.User, others);
        }

        if (wait > 0)
        {
            return RateLimited(context, wait, "too many groups made or members added; try again later");
        }

        var command = new GroupCommand
        {
            Origin = new HttpOrigin(me.User, me.Device),
            Conv = "",
            Op = GroupOp.Create,
            Name = body.Name!.Trim(),
            Users = members,
            MaxMembers = fanout.Value.MaxGroupMembers,
            Completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
        };
        return await RunAsync(sequencer, command, 201, context.RequestAborted);
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

        if (abuse.GroupAdds(me.User, users.Distinct(StringComparer.Ordinal).Count()) is > 0 and var wait)
        {
            return RateLimited(context, wait, "too many members added to groups; try again later");
        }

        return await RunAsync(sequencer, Command(me, conv, GroupOp.Add, users, maxMembers: fanout.Value.MaxGroupMembers), 200, context.RequestAborted);
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
