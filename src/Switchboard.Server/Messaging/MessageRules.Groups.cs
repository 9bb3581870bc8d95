using System.Globalization;
using System.Text.Json;
using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Messaging;

internal sealed partial class MessageRules
{
    /// <summary>
    /// A group change: checks who may do it, appends the <c>system</c> event that tells every member, and writes
    /// the member records. A call that changes nothing appends nothing.
    /// </summary>
    private async ValueTask ChangeGroupAsync(GroupCommand command, long now)
    {
        var actor = command.Origin.User;
        if (command.Op == GroupOp.Create)
        {
            await CreateGroupAsync(command, now);
            return;
        }

        if (!Names.IsValidGroupId(command.Conv) || await GroupAsync(command.Conv) is not { } group)
        {
            command.Fail(ErrorCodes.NotFound, "no such group");
            return;
        }

        if (command.Op == GroupOp.Join)
        {
            await JoinAsync(command, group, now);
            return;
        }

        if (!group.Current.TryGetValue(actor, out var me))
        {
            command.Fail(ErrorCodes.Forbidden, "not a member of this group");
            return;
        }

        var isAdmin = me.Role == Roles.Admin;
        var seq = (await LastSeqAsync(command.Conv) ?? 0) + 1;
        switch (command.Op)
        {
            case GroupOp.Add:
            {
                if (!isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may add members");
                    return;
                }

                if (await FirstUnknownAsync(command.Users) is { } unknown)
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
                    _current.Writes.Members.Add(new MemberRecord(command.Conv, member.User, member.Role, seq, null, now));
                }

                AppendSystem(command, group.With(set: joined), seq, now, new SystemInfo(SystemOps.Added, Users: added));
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

                _current.Writes.Members.Add(new MemberRecord(command.Conv, target, removed.Role, removed.JoinedSeq, seq, removed.JoinedTs));
                var after = group.With(remove: [new FormerMember(target, removed.JoinedSeq, seq)]);
                string[]? promoted = null;
                if (removed.Role == Roles.Admin && after.Current.Count > 0 && !after.Current.Values.Any(m => m.Role == Roles.Admin))
                {
                    // The last admin went: the longest-standing member takes over, so the group stays manageable.
                    var heir = after.Current.Values.OrderBy(m => m.JoinedSeq).ThenBy(m => m.JoinedTs).ThenBy(m => m.User, StringComparer.Ordinal).First();
                    _current.Writes.Members.Add(new MemberRecord(command.Conv, heir.User, Roles.Admin, heir.JoinedSeq, null, heir.JoinedTs));
                    after = after.With(set: [heir with { Role = Roles.Admin }]);
                    promoted = [heir.User];
                }

                command.Departed = [target];
                AppendSystem(command, after, seq, now, new SystemInfo(leaving ? SystemOps.Left : SystemOps.Removed, Users: [target], Promoted: promoted));
                return;
            }

            case GroupOp.Rename:
            {
                if (!isAdmin)
                {
                    command.Fail(ErrorCodes.Forbidden, "only admins may rename the group");
                    return;
                }

                _current.Writes.Groups.Add((command.Conv, command.Name!, group.Created));
                AppendSystem(command, group.With(name: command.Name), seq, now, new SystemInfo(SystemOps.Renamed, Name: command.Name));
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

                _current.Writes.Members.Add(new MemberRecord(command.Conv, target, command.Role!, member.JoinedSeq, null, member.JoinedTs));
                AppendSystem(command, group.With(set: [member with { Role = command.Role! }]), seq, now, new SystemInfo(SystemOps.Role, Users: [target], Role: command.Role));
                return;
            }
        }
    }

    private async ValueTask CreateGroupAsync(GroupCommand command, long now)
    {
        var actor = command.Origin.User;
        var others = command.Users.Distinct(StringComparer.Ordinal).Where(u => u != actor).ToArray();
        if (others.Length + 1 > command.MaxMembers)
        {
            command.Fail(ErrorCodes.TooLarge, $"a group has at most {command.MaxMembers} members");
            return;
        }

        if (await FirstUnknownAsync(others) is { } unknown)
        {
            command.Fail(ErrorCodes.NotFound, $"no such user: {unknown}");
            return;
        }

        var conv = Names.GroupPrefix + _ids.Next().ToString(CultureInfo.InvariantCulture);
        var members = new List<GroupMember> { new(actor, Roles.Admin, 1, now) };
        members.AddRange(others.Select(u => new GroupMember(u, Roles.Member, 1, now)));
        _current.Writes.Groups.Add((conv, command.Name!, now));
        foreach (var member in members)
        {
            _current.Writes.Members.Add(new MemberRecord(conv, member.User, member.Role, 1, null, now));
        }

        var group = new GroupSnapshot(conv, command.Name!, now, members.ToDictionary(m => m.User, StringComparer.Ordinal), []);
        command.CreatedConv = conv;
        AppendSystem(command, group, 1, now, new SystemInfo(SystemOps.Created, Users: others, Name: command.Name));
    }

    /// <summary>Appends the system event and stages the new membership for publication after commit.</summary>
    private void AppendSystem(GroupCommand command, GroupSnapshot group, long seq, long now, SystemInfo system)
    {
        var id = _ids.Next();
        var stored = new EventRecord
        {
            Conv = group.Conv,
            Seq = seq,
            Id = id,
            Ts = now,
            Sender = command.Origin.User,
            Dev = command.Origin.Device,
            Kind = EventKinds.System,
            Cid = "system:" + id.ToString(CultureInfo.InvariantCulture), // unique per event, so (sender, cid) never collides
            System = JsonSerializer.Serialize(system, SwitchboardJsonContext.Default.SystemInfo),
        };
        Append(stored);
        _current.Groups[group.Conv] = group;
        command.Group = group;
        command.Members = group.Users;
        command.Event = stored;
    }

    /// <summary>A server notice about the origin user, in one conversation they are a current member of.</summary>
    private async ValueTask NoticeAsync(NoticeCommand command, long now)
    {
        IReadOnlyList<string> members;
        if (Names.TryParseDirect(command.Conv, out var a, out var b))
        {
            members = [a, b];
        }
        else if (await GroupAsync(command.Conv) is { } group)
        {
            members = group.Users;
        }
        else
        {
            return;
        }

        if (!members.Contains(command.Origin.User) || await LastSeqAsync(command.Conv) is not { } last)
        {
            return; // not theirs (any more), or a direct conversation that never began
        }

        var id = _ids.Next();
        var stored = new EventRecord
        {
            Conv = command.Conv,
            Seq = last + 1,
            Id = id,
            Ts = now,
            Sender = command.Origin.User,
            Dev = command.Origin.Device,
            Kind = EventKinds.System,
            Cid = "system:" + id.ToString(CultureInfo.InvariantCulture),
            System = JsonSerializer.Serialize(command.System, SwitchboardJsonContext.Default.SystemInfo),
        };
        Append(stored);
        command.Members = members;
        command.Event = stored;
    }

    /// <summary>The actor joins on an invite: one <c>added</c> event naming them, as an admin's add would.</summary>
    private async ValueTask JoinAsync(GroupCommand command, GroupSnapshot group, long now)
    {
        var actor = command.Origin.User;
        if (group.Current.ContainsKey(actor))
        {
            command.Group = group; // already a member
            return;
        }

        if (group.Current.Count + 1 > command.MaxMembers)
        {
            command.Fail(ErrorCodes.TooLarge, $"a group has at most {command.MaxMembers} members");
            return;
        }

        var seq = (await LastSeqAsync(command.Conv) ?? 0) + 1;
        var joined = new GroupMember(actor, Roles.Member, seq, now);
        _current.Writes.Members.Add(new MemberRecord(command.Conv, actor, Roles.Member, seq, null, now));
        AppendSystem(command, group.With(set: [joined]), seq, now, new SystemInfo(SystemOps.Added, Users: [actor]));
    }

    private async ValueTask<string?> FirstUnknownAsync(IEnumerable<string> users)
    {
        foreach (var user in users)
        {
            if (!await UserExistsAsync(user))
            {
                return user;
            }
        }

        return null;
    }
}
