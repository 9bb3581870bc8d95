using System.Globalization;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Messaging;
using Switchboard.Server.Presence;
using Switchboard.Server.Storage;
using static Switchboard.Server.Http.HttpHelpers;

namespace Switchboard.Server.Http;

/// <summary>Conversation list, history, message info and presence lookups.</summary>
internal static class ConversationEndpoints
{
    public static void MapConversationEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/conversations", List);
        app.MapGet("/v1/conversations/{conv}/messages", History);
        app.MapPost("/v1/conversations/{conv}/messages", SendAsync);
        app.MapPut("/v1/conversations/{conv}/mute", MuteAsync);
        app.MapDelete("/v1/conversations/{conv}/mute", UnmuteAsync);
        app.MapGet("/v1/conversations/{conv}/receipts", Receipts);
        app.MapGet("/v1/presence/{user}", PresenceOf);
    }

    /// <summary>
    /// A send over HTTP, for scripts, bots and one-shot commands that should not take a device's socket: the same
    /// checks and the same idempotency by cid as the <c>send</c> frame, answered 201 with the ack once durable
    /// (<c>dup: true</c> for a cid already stored, with the original seq).
    /// </summary>
    private static async Task<IResult> SendAsync(HttpContext context, string conv, AccountService accounts, MessageService messages, IOptions<AccountsOptions> limits, IOptions<MessagingOptions> messaging)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        // The body may carry a message as large as a frame allows; the size rule itself is the sequencer's.
        var (frame, error) = await ReadAsync(context, SwitchboardJsonContext.Default.ClientFrame, Math.Max(limits.Value.MaxRequestBodyBytes, Math.Max(messaging.Value.MaxBodyBytes, messaging.Value.MaxE2eeBytes) * 2));
        if (error is not null)
        {
            return error;
        }

        frame!.Conv = conv;
        var command = await messages.SendOverHttpAsync(new HttpOrigin(me.User, me.Device), frame, context.RequestAborted);
        return command.ErrorCode switch
        {
            null => Json(command.Ack!, SwitchboardJsonContext.Default.AckFrame, 201),
            ErrorCodes.BadFrame or ErrorCodes.Invalid => Error(400, ErrorCodes.Invalid, command.ErrorMessage!),
            ErrorCodes.Forbidden => Error(403, ErrorCodes.Forbidden, command.ErrorMessage!),
            ErrorCodes.NotFound => Error(404, ErrorCodes.NotFound, command.ErrorMessage!),
            ErrorCodes.TooLarge => Error(413, ErrorCodes.TooLarge, command.ErrorMessage!),
            ErrorCodes.RateLimited => RateLimited(context, command.RetryAfterMs, command.ErrorMessage!),
            ErrorCodes.DevicesChanged => Results.Json(new ErrorFrame(ErrorCodes.DevicesChanged, command.ErrorMessage!, command.Cid) { Recipients = command.Recipients }, SwitchboardJsonContext.Default.ErrorFrame, statusCode: 409),
            _ => Error(503, ErrorCodes.Unavailable, command.ErrorMessage!),
        };
    }

    /// <summary>Mutes a conversation of the caller's, for every device of theirs, until a time or until unmuted.</summary>
    private static async Task<IResult> MuteAsync(HttpContext context, string conv, AccountService accounts, ConversationAccess access, IOptions<AccountsOptions> limits)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var hasBody = context.Request.ContentLength > 0 || context.Request.Headers.TransferEncoding.Count > 0;
        var (body, error) = !hasBody
            ? (new MuteRequest(null), null)
            : await ReadAsync(context, SwitchboardJsonContext.Default.MuteRequest, limits.Value.MaxRequestBodyBytes);
        if (error is not null)
        {
            return error;
        }

        if ((await access.ResolveAsync(conv, me.User, context.RequestAborted)) is { Membership: null } found)
        {
            return AccessError(found);
        }

        await accounts.SetMuteAsync(me.User, conv, body!.Until ?? long.MaxValue, context.RequestAborted);
        return Results.NoContent();
    }

    private static async Task<IResult> UnmuteAsync(HttpContext context, string conv, AccountService accounts, ConversationAccess access)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if ((await access.ResolveAsync(conv, me.User, context.RequestAborted)) is { Membership: null } found)
        {
            return AccessError(found);
        }

        await accounts.SetMuteAsync(me.User, conv, null, context.RequestAborted);
        return Results.NoContent();
    }

    private static async Task<IResult> List(HttpContext context, AccountService accounts, IMessageStore store, GroupDirectory groups)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var ct = context.RequestAborted;
        var cursors = await store.GetDeviceCursorsAsync(me.User, me.Device, ct);
        var mutes = await accounts.GetMutesAsync(me.User, ct);
        var list = new List<ConversationInfo>();
        foreach (var member in await store.GetMembershipsAsync(me.User, ct))
        {
            var last = member.LastVisible;
            // A member counts from their joining: what came before it is neither unread nor undelivered.
            var floor = Math.Min(member.FirstSeq - 1, last);
            var own = await store.GetMemberCursorAsync(new MemberCursorKey(member.Conv, me.User), ct);
            var read = own is { } found ? Math.Clamp(found.Read, floor, last) : floor;
            var delivered = Math.Clamp(cursors.GetValueOrDefault(member.Conv), floor, last);
            var name = Names.IsGroup(member.Conv)
                ? (await groups.GetAsync(member.Conv, ct))?.Name
                : Names.TryParseDirect(member.Conv, out var first, out var second) ? (first == me.User ? second : first) : null;
            list.Add(new ConversationInfo(member.Conv, member.ListKind, last, delivered, read, await store.CountUnreadAsync(member.Conv, me.User, read, last, ct)) { Name = name, MutedUntil = mutes.TryGetValue(member.Conv, out var until) ? until : null });
        }

        return Json(list, SwitchboardJsonContext.Default.ListConversationInfo);
    }

    private static async Task<IResult> History(HttpContext context, string conv, AccountService accounts, ConversationAccess access, IMessageStore store, IOptions<StorageOptions> storage, TimeProvider time)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var query = context.Request.Query;
        if (!TryLong(query["before"], out var before) || before is < 1 || !TryLong(query["limit"], out var limitValue) || limitValue is < 1)
        {
            return Error(400, ErrorCodes.Invalid, "before and limit must be positive integers");
        }

        var found = await access.ResolveAsync(conv, me.User, context.RequestAborted);
        if (found.Membership is not { } member)
        {
            return AccessError(found);
        }

        var limit = (int)Math.Min(limitValue ?? Limits.DefaultHistoryLimit, Limits.MaxHistoryLimit);
        var end = Math.Min(before ?? long.MaxValue, member.LastVisible + 1);
        var minTs = time.GetUtcNow().ToUnixTimeMilliseconds() - (storage.Value.RetentionDays * 86_400_000L);
        var page = await store.ReadBeforeAsync(conv, end, member.FirstSeq, minTs, limit + 1, context.RequestAborted);
        var more = page.Count > limit;
        if (more)
        {
            page.RemoveAt(page.Count - 1);
        }

        return Json(new HistoryPage([.. page.Select(e => Frames.ToMsgFrame(e, null, (me.User, me.Device)))], more), SwitchboardJsonContext.Default.HistoryPage);
    }

    private static async Task<IResult> Receipts(HttpContext context, string conv, AccountService accounts, ConversationAccess access, IMessageStore store, GroupDirectory groups)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!TryLong(context.Request.Query["seq"], out var seq) || seq is not >= 1)
        {
            return Error(400, ErrorCodes.Invalid, "seq is required and must be a positive integer");
        }

        var ct = context.RequestAborted;
        var found = await access.ResolveAsync(conv, me.User, ct);
        if (found.Membership is not { } self)
        {
            return AccessError(found);
        }

        if (!self.IsCurrent)
        {
            return Error(403, ErrorCodes.Forbidden, "no longer a member of this conversation");
        }

        var cursors = (await store.GetMemberCursorsAsync(conv, ct)).ToDictionary(c => c.User, StringComparer.Ordinal);
        var group = Names.IsGroup(conv) ? await groups.GetAsync(conv, ct) : null;
        var rows = new List<ReceiptRow>();
        foreach (var user in await access.CurrentMembersAsync(conv, ct))
        {
            var cursor = cursors.GetValueOrDefault(user);
            // A member counts from their join: what came before it was never theirs to receive.
            var floor = group is not null && group.Current.TryGetValue(user, out var member) ? member.JoinedSeq - 1 : 0;
            rows.Add(new ReceiptRow(user, Math.Max(cursor.Delivered, floor), Math.Max(cursor.Read, floor)));
        }

        return Json(rows, SwitchboardJsonContext.Default.ListReceiptRow);
    }

    private static async Task<IResult> PresenceOf(HttpContext context, string user, AccountService accounts, PresenceService presence)
    {
        if (await AuthenticateAsync(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!Names.IsValidHandle(user) || !await accounts.UserExistsAsync(user, context.RequestAborted))
        {
            return Error(404, ErrorCodes.NotFound, "no such user");
        }

        if (!await presence.MayWatchAsync(me.User, user))
        {
            return Error(403, ErrorCodes.Forbidden, "you share no conversation with this user");
        }

        var (online, lastSeen) = await presence.GetAsync(user);
        return Json(new PresenceInfo(user, online, lastSeen), SwitchboardJsonContext.Default.PresenceInfo);
    }

    private static IResult AccessError(AccessResult access) => access.ErrorCode == ErrorCodes.NotFound
        ? Error(404, ErrorCodes.NotFound, access.ErrorMessage!)
        : Error(403, ErrorCodes.Forbidden, access.ErrorMessage!);

    private static bool TryLong(Microsoft.Extensions.Primitives.StringValues values, out long? value)
    {
        value = null;
        if (values.Count == 0 || string.IsNullOrEmpty(values[0]))
        {
            return true;
        }

        if (long.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
        {
            value = parsed;
            return true;
        }

        return false;
    }
}
