using System.CommandLine;
using Switchboard.Protocol;

namespace Switchboard.Cli.Commands;

/// <summary><c>groups …</c>: create, show, list, add, remove, leave, rename, role.</summary>
internal static class GroupCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "Group name (1–100 characters)" };
        var members = new Argument<string[]>("members") { Description = "Handles to add", Arity = ArgumentArity.ZeroOrMore };
        var create = new Command("create", "Create a group; you are its admin") { name, members };
        create.SetAction((parse, ct) => Run(parse, async (client, _) => Print(await client.CreateGroupAsync(parse.GetValue(name)!, parse.GetValue(members) ?? [], ct))));

        var conv = new Argument<string>("group") { Description = "Group id (grp:…)" };
        var show = new Command("show", "Show a group and its members") { conv };
        show.SetAction((parse, ct) => Run(parse, async (client, _) => Print(await client.GetGroupAsync(parse.GetValue(conv)!, ct))));

        var list = new Command("list", "List your groups");
        list.SetAction((parse, ct) => Run(parse, async (client, _) =>
        {
            foreach (var c in await client.GetConversationsAsync(ct))
            {
                if (c.Kind == "group")
                {
                    Console.WriteLine($"{c.Name ?? c.Conv,-32} {c.Conv,-28} last #{c.LastSeq,-6} {(c.Unread > 0 ? $"{c.Unread} unread" : "")}");
                }
            }
        }));

        var addConv = new Argument<string>("group") { Description = "Group id" };
        var users = new Argument<string[]>("users") { Description = "Handles to add", Arity = ArgumentArity.OneOrMore };
        var add = new Command("add", "Add members (admins)") { addConv, users };
        add.SetAction((parse, ct) => Run(parse, async (client, _) => Print(await client.AddMembersAsync(parse.GetValue(addConv)!, parse.GetValue(users)!, ct))));

        var removeConv = new Argument<string>("group") { Description = "Group id" };
        var removeUser = new Argument<string>("user") { Description = "Member to remove" };
        var remove = new Command("remove", "Remove a member (admins)") { removeConv, removeUser };
        remove.SetAction((parse, ct) => Run(parse, async (client, _) =>
        {
            await client.RemoveMemberAsync(parse.GetValue(removeConv)!, parse.GetValue(removeUser)!, ct);
            Console.WriteLine($"removed {parse.GetValue(removeUser)}");
        }));

        var leaveConv = new Argument<string>("group") { Description = "Group id" };
        var leave = new Command("leave", "Leave a group") { leaveConv };
        leave.SetAction((parse, ct) => Run(parse, async (client, me) =>
        {
            await client.RemoveMemberAsync(parse.GetValue(leaveConv)!, me, ct);
            Console.WriteLine($"left {parse.GetValue(leaveConv)}");
        }));

        var renameConv = new Argument<string>("group") { Description = "Group id" };
        var newName = new Argument<string>("name") { Description = "New name" };
        var rename = new Command("rename", "Rename a group (admins)") { renameConv, newName };
        rename.SetAction((parse, ct) => Run(parse, async (client, _) => Print(await client.RenameGroupAsync(parse.GetValue(renameConv)!, parse.GetValue(newName)!, ct))));

        var roleConv = new Argument<string>("group") { Description = "Group id" };
        var roleUser = new Argument<string>("user") { Description = "Member" };
        var role = new Argument<string>("role") { Description = "admin or member" };
        role.AcceptOnlyFromAmong(Roles.Admin, Roles.Member);
        var setRole = new Command("role", "Make a member an admin or a plain member (admins)") { roleConv, roleUser, role };
        setRole.SetAction((parse, ct) => Run(parse, async (client, _) => Print(await client.SetRoleAsync(parse.GetValue(roleConv)!, parse.GetValue(roleUser)!, parse.GetValue(role)!, ct))));

        return new Command("groups", "Create and manage groups") { create, show, list, add, remove, leave, rename, setRole };
    }

    private static Task<int> Run(ParseResult parse, Func<Client.SwitchboardClient, string, Task> body) => CliRunner.RunAsync(async () =>
    {
        var config = CliRunner.RequireLogin(parse);
        await using var client = CliRunner.Client(parse, config);
        await body(client, config.User);
        return ExitCodes.Ok;
    });

    private static void Print(GroupInfo group)
    {
        Console.WriteLine($"{group.Conv}  \"{group.Name}\"  {group.Members.Count} members");
        foreach (var member in group.Members)
        {
            Console.WriteLine($"  {member.User}{(member.Role == Roles.Admin ? "  (admin)" : "")}");
        }
    }
}
