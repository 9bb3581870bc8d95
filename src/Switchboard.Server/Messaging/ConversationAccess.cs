using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

/// <summary>Outcome of looking up a user's access to a conversation.</summary>
internal readonly record struct AccessResult(Membership? Membership, string? ErrorCode, string? ErrorMessage)
{
    public static AccessResult NotFound(string message) => new(null, ErrorCodes.NotFound, message);
    public static AccessResult Forbidden(string message) => new(null, ErrorCodes.Forbidden, message);
}

/// <summary>
/// Who may see what, for the read paths (history, sync, receipts, typing, presence): a direct conversation
/// belongs to its two handles once both users exist; a group to its members, a former member seeing up to their
/// removal. The sequencer applies the same rule to writes (<see cref="MessageRules"/>), with its batch in view.
/// </summary>
internal sealed class ConversationAccess(IMessageStore store, AccountService accounts, GroupDirectory groups)
{
    public async ValueTask<AccessResult> ResolveAsync(string conv, string user, CancellationToken cancellationToken = default)
    {
        if (Names.TryParseDirect(conv, out var a, out var b))
        {
            var last = await store.GetLastSeqAsync(conv, cancellationToken);
            if (last is null && (!await accounts.UserExistsAsync(a, cancellationToken) || !await accounts.UserExistsAsync(b, cancellationToken)))
            {
                return AccessResult.NotFound("no such conversation");
            }

            if (user != a && user != b)
            {
                return AccessResult.Forbidden("not a member of this conversation");
            }

            return new AccessResult(new Membership(conv, "direct", Roles.Member, 1, null, last ?? 0), null, null);
        }

        if (!Names.IsValidGroupId(conv) || await groups.GetAsync(conv, cancellationToken) is not { } group)
        {
            return AccessResult.NotFound("no such conversation");
        }

        var groupLast = await store.GetLastSeqAsync(conv, cancellationToken) ?? 0;
        if (group.Current.TryGetValue(user, out var current))
        {
            return new AccessResult(new Membership(conv, "group", current.Role, current.JoinedSeq, null, groupLast), null, null);
        }

        if (group.Former.TryGetValue(user, out var former))
        {
            return new AccessResult(new Membership(conv, "group", Roles.Member, former.JoinedSeq, former.RemovedSeq, groupLast), null, null);
        }

        return AccessResult.Forbidden("not a member of this conversation");
    }

    /// <summary>The current members: a direct conversation's are in its id, a group's in the directory.</summary>
    public async ValueTask<IReadOnlyList<string>> CurrentMembersAsync(string conv, CancellationToken cancellationToken = default)
    {
        if (Names.TryParseDirect(conv, out var a, out var b))
        {
            return [a, b];
        }

        return await groups.GetAsync(conv, cancellationToken) is { } group ? group.Users : [];
    }

    /// <summary>A direct conversation with at least one event, or current membership of the same group.</summary>
    public async ValueTask<bool> SharesConversationAsync(string a, string b, CancellationToken cancellationToken = default)
    {
        if (a == b)
        {
            return true;
        }

        if (await store.GetLastSeqAsync(Names.DirectConversation(a, b), cancellationToken) is not null)
        {
            return true;
        }

        foreach (var membership in await store.GetMembershipsAsync(a, cancellationToken))
        {
            if (membership.Kind == "group" && membership.IsCurrent && await groups.GetAsync(membership.Conv, cancellationToken) is { } group && group.Current.ContainsKey(b))
            {
                return true;
            }
        }

        return false;
    }
}
