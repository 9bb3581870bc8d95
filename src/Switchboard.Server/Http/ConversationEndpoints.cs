using System.Globalization;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
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
        app.MapGet("/v1/conversations/{conv}/receipts", Receipts);
        app.MapGet("/v1/presence/{user}", PresenceOf);
    }

    private static IResult List(HttpContext context, AccountStore accounts, IMessageStore store)
    {
        if (Authenticate(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var cursors = store.GetDeviceCursors(me.User, me.Device);
        var list = new List<ConversationInfo>();
        foreach (var member in store.GetMemberships(me.User))
        {
            var last = member.LastVisible;
            // A member counts from their joining: what came before it is neither unread nor undelivered.
            var floor = Math.Min(member.FirstSeq - 1, last);
            var read = floor;
            foreach (var cursor in store.GetMemberCursors(member.Conv))
            {
                if (cursor.User == me.User)
                {
                    read = Math.Clamp(cursor.Read, floor, last);
                }
            }

            var delivered = Math.Clamp(cursors.GetValueOrDefault(member.Conv), floor, last);
            list.Add(new ConversationInfo(member.Conv, member.ListKind, last, delivered, read, store.CountUnread(member.Conv, me.User, read, last)));
        }

        return Json(list, SwitchboardJsonContext.Default.ListConversationInfo);
    }

    private static IResult History(HttpContext context, string conv, AccountStore accounts, IMessageStore store, IOptions<StorageOptions> storage, TimeProvider time)
    {
        if (Authenticate(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        var query = context.Request.Query;
        if (!TryLong(query["before"], out var before) || before is < 1 || !TryLong(query["limit"], out var limitValue) || limitValue is < 1)
        {
            return Error(400, ErrorCodes.Invalid, "before and limit must be positive integers");
        }

        var access = store.ResolveAccess(conv, me.User);
        if (access.Membership is not { } member)
        {
            return AccessError(access);
        }

        var limit = (int)Math.Min(limitValue ?? Limits.DefaultHistoryLimit, Limits.MaxHistoryLimit);
        var end = Math.Min(before ?? long.MaxValue, member.LastVisible + 1);
        var minTs = time.GetUtcNow().ToUnixTimeMilliseconds() - (storage.Value.RetentionDays * 86_400_000L);
        var page = store.ReadBefore(conv, end, member.FirstSeq, minTs, limit + 1);
        var more = page.Count > limit;
        if (more)
        {
            page.RemoveAt(page.Count - 1);
        }

        return Json(new HistoryPage(page, more), SwitchboardJsonContext.Default.HistoryPage);
    }

    private static IResult Receipts(HttpContext context, string conv, AccountStore accounts, IMessageStore store, GroupDirectory groups)
    {
        if (Authenticate(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!TryLong(context.Request.Query["seq"], out var seq) || seq is not >= 1)
        {
            return Error(400, ErrorCodes.Invalid, "seq is required and must be a positive integer");
        }

        var access = store.ResolveAccess(conv, me.User);
        if (access.Membership is not { } self)
        {
            return AccessError(access);
        }

        if (!self.IsCurrent)
        {
            return Error(403, ErrorCodes.Forbidden, "no longer a member of this conversation");
        }

        var cursors = store.GetMemberCursors(conv).ToDictionary(c => c.User, StringComparer.Ordinal);
        var group = Names.IsGroup(conv) ? groups.Get(conv) : null;
        var rows = new List<ReceiptRow>();
        foreach (var user in store.CurrentMembers(conv))
        {
            var cursor = cursors.GetValueOrDefault(user);
            // A member counts from their join: what came before it was never theirs to receive.
            var floor = group is not null && group.Current.TryGetValue(user, out var member) ? member.JoinedSeq - 1 : 0;
            rows.Add(new ReceiptRow(user, Math.Max(cursor?.Delivered ?? 0, floor), Math.Max(cursor?.Read ?? 0, floor)));
        }

        return Json(rows, SwitchboardJsonContext.Default.ListReceiptRow);
    }

    private static IResult PresenceOf(HttpContext context, string user, AccountStore accounts, PresenceService presence)
    {
        if (Authenticate(context, accounts) is not { } me)
        {
            return Unauthorized();
        }

        if (!Names.IsValidHandle(user) || !accounts.UserExists(user))
        {
            return Error(404, ErrorCodes.NotFound, "no such user");
        }

        if (!presence.MayWatch(me.User, user))
        {
            return Error(403, ErrorCodes.Forbidden, "you share no conversation with this user");
        }

        var (online, lastSeen) = presence.Get(user);
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
