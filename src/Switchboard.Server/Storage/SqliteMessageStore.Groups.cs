using System.Globalization;
using System.Text.Json;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

internal sealed partial class SqliteMessageStore
{
    /// <summary>
    /// Applies a group change inside the batch: checks who may do it, appends the <c>system</c> event that tells
    /// every member, and updates the members rows. A call that changes nothing appends nothing.
    /// </summary>
    private void ChangeGroup(WriterStatements statements, GroupCommand command, long now)
    {
        var actor = command.Origin.User;
        if (command.Op == GroupOp.Create)
        {
            CreateGroup(statements, command, now);
            return;
        }

        if (Group(command.Conv) is not { } group)
        {
            command.Fail(ErrorCodes.NotFound, "no such group");
            return;
        }

        if (!group.Current.TryGetValue(actor, out var me))
        {
            command.Fail(ErrorCodes.Forbidden, "not a member of this group");
            return;
        }

        var isAdmin = me.Role == Roles.Admin;
        var seq = NextSeq(command.Conv);
        switch (command.Op)
        {
            case GroupOp.Add:
            {
                if (!isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may add members");
                    return;
                }

                if (FirstUnknown(statements, command.Users) is { } unknown)
                {
                    command.Fail(ErrorCodes.NotFound, $"no such user: {unknown}");
                    return;
                }

                var added = command.Users.Distinct(StringComparer.Ordinal).Where(u => !group.Current.ContainsKey(u)).ToArray();
                if (added.Length == 0)
                {
                    command.Group = group; // adding existing members is ignored
                    return;
                }

                if (group.Current.Count + added.Length > command.MaxMembers)
                {
                    command.Fail(ErrorCodes.TooLarge, $"a group has at most {command.MaxMembers} members");
                    return;
                }

                var joined = added.Select(u => new GroupMember(u, Roles.Member, seq, now)).ToList();
                foreach (var member in joined)
                {
                    statements.SetGroupMember(command.Conv, member);
                }

                Commit(statements, command, group.With(set: joined), seq, now, new SystemInfo(SystemOps.Added, Users: added));
                return;
            }

            case GroupOp.Remove:
            {
                var target = command.Users[0];
                var leaving = target == actor;
                if (!leaving && !isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may remove members");
                    return;
                }

                if (!group.Current.TryGetValue(target, out var removed))
                {
                    command.Fail(ErrorCodes.NotFound, "not a member of this group");
                    return;
                }

                statements.RemoveGroupMember(command.Conv, target, seq);
                var after = group.With(remove: [new FormerMember(target, removed.JoinedSeq, seq)]);
                string[]? promoted = null;
                if (removed.Role == Roles.Admin && after.Current.Count > 0 && !after.Current.Values.Any(m => m.Role == Roles.Admin))
                {
                    // The last admin went: the longest-standing member takes over, so the group stays manageable.
                    var heir = after.Current.Values.OrderBy(m => m.JoinedSeq).ThenBy(m => m.JoinedTs).ThenBy(m => m.User, StringComparer.Ordinal).First();
                    statements.SetRole(command.Conv, heir.User, Roles.Admin);
                    after = after.With(set: [heir with { Role = Roles.Admin }]);
                    promoted = [heir.User];
                }

                command.Departed = [target];
                Commit(statements, command, after, seq, now, new SystemInfo(leaving ? SystemOps.Left : SystemOps.Removed, Users: [target], Promoted: promoted));
                return;
            }

            case GroupOp.Rename:
            {
                if (!isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may rename the group");
                    return;
                }

                statements.RenameGroup(command.Conv, command.Name!);
                Commit(statements, command, group.With(name: command.Name), seq, now, new SystemInfo(SystemOps.Renamed, Name: command.Name));
                return;
            }

            case GroupOp.SetRole:
            {
                var target = command.Users[0];
                if (!isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may change roles");
                    return;
                }

                if (!group.Current.TryGetValue(target, out var member))
                {
                    command.Fail(ErrorCodes.NotFound, "not a member of this group");
                    return;
                }

                if (member.Role == command.Role)
                {
                    command.Group = group;
                    return;
                }

                if (command.Role == Roles.Member && group.Current.Values.Count(m => m.Role == Roles.Admin) == 1)
                {
                    command.Fail(ErrorCodes.Invalid, "a group needs at least one admin");
                    return;
                }

                statements.SetRole(command.Conv, target, command.Role!);
                Commit(statements, command, group.With(set: [member with { Role = command.Role! }]), seq, now, new SystemInfo(SystemOps.Role, Users: [target], Role: command.Role));
                return;
            }
        }
    }

    private void CreateGroup(WriterStatements statements, GroupCommand command, long now)
    {
        var actor = command.Origin.User;
        var others = command.Users.Distinct(StringComparer.Ordinal).Where(u => u != actor).ToArray();
        if (others.Length + 1 > command.MaxMembers)
        {
            command.Fail(ErrorCodes.TooLarge, $"a group has at most {command.MaxMembers} members");
            return;
        }

        if (FirstUnknown(statements, others) is { } unknown)
        {
            command.Fail(ErrorCodes.NotFound, $"no such user: {unknown}");
            return;
        }

        var conv = Names.GroupPrefix + _ids.Next().ToString(CultureInfo.InvariantCulture);
        statements.InsertGroup(conv, command.Name!, now);
        _lastSeq[conv] = 0;
        var members = new List<GroupMember> { new(actor, Roles.Admin, 1, now) };
        members.AddRange(others.Select(u => new GroupMember(u, Roles.Member, 1, now)));
        foreach (var member in members)
        {
            statements.SetGroupMember(conv, member);
        }

        var group = new GroupSnapshot(conv, command.Name!, members.ToDictionary(m => m.User, StringComparer.Ordinal), []);
        command.CreatedConv = conv;
        Commit(statements, command, group, 1, now, new SystemInfo(SystemOps.Created, Users: others, Name: command.Name));
    }

    private long NextSeq(string conv)
    {
        if (!_lastSeq.TryGetValue(conv, out var last))
        {
            using var connection = _database.Open();
            last = ConversationAccess.LastSeq(connection, null, conv) ?? 0;
        }

        return last + 1;
    }

    /// <summary>Appends the system event and stages the new membership for publication after commit.</summary>
    private void Commit(WriterStatements statements, GroupCommand command, GroupSnapshot group, long seq, long now, SystemInfo system)
    {
        var conv = group.Conv;
        var id = _ids.Next();
        var cid = "system:" + id.ToString(CultureInfo.InvariantCulture); // unique per event, so (sender, cid) never collides
        var systemJson = JsonSerializer.Serialize(system, SwitchboardJsonContext.Default.SystemInfo);
        statements.InsertEvent(conv, seq, id, now, command.Origin.User, command.Origin.Device, EventKinds.System, cid, null, null, null, null, systemJson);
        _lastSeq[conv] = seq;
        _touched[conv] = "group";
        _pendingGroups[conv] = group;
        command.Group = group;
        command.Members = group.Users;
        command.Event = new MsgFrame
        {
            T = FrameTypes.Msg,
            Conv = conv,
            Seq = seq,
            Id = id.ToString(CultureInfo.InvariantCulture),
            Ts = now,
            From = command.Origin.User,
            Dev = command.Origin.Device,
            Kind = EventKinds.System,
            Cid = cid,
            System = system,
        };
    }

    private static string? FirstUnknown(WriterStatements statements, IEnumerable<string> users)
    {
        foreach (var user in users)
        {
            if (!Names.IsValidHandle(user) || !statements.UserExists(user))
            {
                return user;
            }
        }

        return null;
    }
}
