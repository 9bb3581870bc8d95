using System.CommandLine;
using System.Globalization;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Cli.Commands;

/// <summary><c>send</c>, <c>history</c> and <c>conversations</c>.</summary>
internal static class MessageCommands
{
    public static IEnumerable<Command> Create()
    {
        var to = new Argument<string>("to") { Description = "A user handle (direct chat) or a conversation id (dm:… or grp:…)" };
        var text = new Argument<string[]>("text") { Description = "The message; several words are joined with spaces", Arity = ArgumentArity.OneOrMore };
        var send = new Command("send", "Send a message and wait until the server has made it durable (✓)") { to, text };
        send.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            var conv = CliRunner.Conversation(parse.GetValue(to)!, config.User);
            await using var client = CliRunner.Client(parse, config);
            // Over HTTP, not a socket: an open `chat` of this device keeps its socket (a second socket of the same
            // device would replace it), and sees the message too.
            var body = string.Join(' ', parse.GetValue(text)!);
            AckFrame ack;
            var sealedText = client.EndToEndEncrypted;
            try
            {
                ack = await client.PostTextAsync(conv, body, cancellationToken: ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
            }
            catch (SwitchboardException ex) when (ex.Code == Switchboard.Client.E2ee.E2eeErrorCodes.NoKeys)
            {
                await Console.Error.WriteLineAsync($"warning: {ex.Message}; sending without end-to-end encryption");
                ack = await client.PostTextAsync(conv, body, encrypt: false, cancellationToken: ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
                sealedText = false;
            }

            Console.WriteLine($"✓ {ack.Conv} #{ack.Seq}{(ack.Dup ? " (already sent)" : "")}{(sealedText ? " 🔒" : "")}");
            return ExitCodes.Ok;
        }));

        var historyOf = new Argument<string>("conversation") { Description = "A user handle or a conversation id" };
        var limit = new Option<int>("--limit") { Description = "How many events (at most 100 per page)", DefaultValueFactory = _ => 20 };
        var before = new Option<long?>("--before") { Description = "Only events before this seq (for older pages)" };
        var history = new Command("history", "Show recent events of a conversation, oldest first") { historyOf, limit, before };
        history.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            var conv = CliRunner.Conversation(parse.GetValue(historyOf)!, config.User);
            await using var client = CliRunner.Client(parse, config);
            var page = await client.GetHistoryAsync(conv, parse.GetValue(before), Math.Clamp(parse.GetValue(limit), 1, Limits.MaxHistoryLimit), ct);
            foreach (var message in page.Messages.Reverse().Where(m => m.Kind != EventKinds.Key)) // key hand-outs are not shown
            {
                Console.WriteLine(Format(message, await client.ReadableTextAsync(message, ct))); // decrypted here, by this device's keys
            }

            if (page.More && page.Messages.Count > 0)
            {
                Console.WriteLine($"(older: switchboard history {parse.GetValue(historyOf)} --before {page.Messages[^1].Seq})");
            }

            return ExitCodes.Ok;
        }));

        var conversations = new Command("conversations", "List your conversations with unread counts");
        conversations.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using var client = CliRunner.Client(parse, config);
            foreach (var c in await client.GetConversationsAsync(ct))
            {
                Console.WriteLine($"{c.Name ?? c.Conv,-32} {c.Kind,-6} last #{c.LastSeq,-6} {(c.Unread > 0 ? $"{c.Unread} unread" : ""),-10} {(c.MutedUntil is null ? "" : "muted "),-6}{c.Conv}");
            }

            return ExitCodes.Ok;
        }));

        return [send, history, conversations];
    }

    /// <summary>One event as a line: time, seq, author and what happened (<paramref name="text"/>: the readable text, decrypted here).</summary>
    public static string Format(MsgFrame m, string? text = null, string? decryptionError = null)
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds(m.Ts).ToLocalTime().ToString("HH:mm", CultureInfo.InvariantCulture);
        var body = text ?? m.Body ?? (m.E2ee is null ? "" : decryptionError is null ? "(encrypted; not readable on this device)" : $"(could not be decrypted: {decryptionError})");
        var what = m.Kind switch
        {
            EventKinds.Text => body,
            EventKinds.Media => $"[media] {body}",
            EventKinds.Edit => $"(edited #{m.Target}) {body}",
            EventKinds.Delete => $"(deleted #{m.Target})",
            EventKinds.System => System(m.System),
            _ => m.Kind,
        };
        return $"{time} #{m.Seq,-5} {m.From}: {what}";
    }

    private static string System(SystemInfo? system) => system switch
    {
        null => "(system)",
        { Op: SystemOps.Created } => $"created the group \"{system.Name}\"{With(system.Users)}",
        { Op: SystemOps.Added } => $"added {string.Join(", ", system.Users ?? [])}",
        { Op: SystemOps.Removed } => $"removed {string.Join(", ", system.Users ?? [])}{Promoted(system)}",
        { Op: SystemOps.Left } => $"left{Promoted(system)}",
        { Op: SystemOps.Renamed } => $"renamed the group to \"{system.Name}\"",
        { Op: SystemOps.Role } => $"made {string.Join(", ", system.Users ?? [])} {system.Role}",
        { Op: SystemOps.IdentityChanged } => $"has new keys on device {system.Device}: your safety number with them changed (switchboard verify)",
        _ => $"({system.Op})",
    };

    private static string With(string[]? users) => users is { Length: > 0 } ? $" with {string.Join(", ", users)}" : "";

    private static string Promoted(SystemInfo system) => system.Promoted is { Length: > 0 } p ? $"; {string.Join(", ", p)} is now admin" : "";
}
