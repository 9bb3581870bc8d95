using System.CommandLine;
using System.Globalization;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Cli.Commands;

/// <summary>
/// <c>switchboard chat</c>: a line-oriented terminal client. It shows the conversation list, then the open
/// conversation's recent history, and from then on live messages with ✓ (durable), ✓✓ (delivered) and "read"
/// ticks, typing and presence lines. Every line typed is sent; lines starting with / are commands. It works the
/// same with standard input from a pipe, which is how scripts and tests drive it: at end of input it waits for
/// the last acks and exits.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var to = new Argument<string?>("to") { Description = "A user handle or conversation id to open", Arity = ArgumentArity.ZeroOrOne };
        var chat = new Command("chat", "Interactive chat: live messages with ticks, typing and presence; /help for commands") { to };
        chat.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using var client = CliRunner.Client(parse, config);
            var session = new ChatSession(client, config.User);
            return await session.RunAsync(parse.GetValue(to), ct);
        }));
        return chat;
    }

    private sealed class ChatSession(SwitchboardClient client, string me)
    {
        private readonly Lock _output = new();
        private readonly List<Task> _pendingSends = [];
        private string? _open;

        /// <summary>What to call each conversation (a group's name, the other user), from the conversation list.</summary>
        private readonly Dictionary<string, string> _names = new(StringComparer.Ordinal);

        /// <summary>Conversations muted: no "new in" line for them.</summary>
        private readonly HashSet<string> _muted = new(StringComparer.Ordinal);

        private string NameOf(string conv) => _names.GetValueOrDefault(conv) ?? conv;
        private long _oldestShown = long.MaxValue;

        public async Task<int> RunAsync(string? target, CancellationToken cancellationToken)
        {
            // Over HTTP first: a server that is down or a token that is refused is said at once, not after the
            // socket has retried for half a minute.
            await ListAsync(cancellationToken);
            await client.ConnectAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var events = ShowEventsAsync(stop.Token);
            if (target is not null)
            {
                await OpenAsync(target, cancellationToken);
            }
            else
            {
                Write("open a conversation with /open <user or id>; /help for commands");
            }

            // Lines until /quit, the end of input, or the connection ending for good (then the chat ends too,
            // rather than taking lines it can no longer send). On a terminal, keys are read one by one, so the
            // other side sees "typing…"; from a pipe, whole lines.
            var lines = Console.IsInputRedirected ? null : StartKeyReader(cancellationToken);
            var input = NextLineAsync(lines, cancellationToken);
            while (await Task.WhenAny(input, _stopped.Task) == input && await input is { } line)
            {
                if (!await HandleLineAsync(line.Trim(), cancellationToken))
                {
                    break;
                }

                input = NextLineAsync(lines, cancellationToken);
            }

            if (_stopped.Task.IsCompleted)
            {
                await stop.CancelAsync();
                return ExitCodes.Unauthorized;
            }

            await Task.WhenAll(_pendingSends).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            await stop.CancelAsync();
            try
            {
                await events;
            }
            catch (OperationCanceledException)
            {
            }

            return _failedSends > 0 ? ExitCodes.Refused : ExitCodes.Ok;
        }

        private int _failedSends;

        /// <summary>Set when the connection ends for good (token refused, device unlinked, replaced by another socket).</summary>
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private async Task<bool> HandleLineAsync(string line, CancellationToken cancellationToken)
        {
            if (line.Length == 0)
            {
                return true;
            }

            var words = line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            try
            {
                return await CommandAsync(line, words, cancellationToken);
            }
            catch (SwitchboardException ex)
            {
                // A mistyped /open, a group that is gone: said, and the chat goes on.
                Write($"error: {ex.Message}");
                return true;
            }
        }

        private async Task<bool> CommandAsync(string line, string[] words, CancellationToken cancellationToken)
        {
            switch (words[0])
            {
                case "/quit" or "/exit":
                    return false;
                case "/help":
                    Write("/open <user|group name|id>  open a conversation · /more  older messages · /list  conversations · /quit");
                    Write("/reply <#> <text> · /edit <#> <text> · /delete <#>  (# is a message's number)");
                    Write("in a group: /members · /add <user> · /remove <user> · /rename <name> · /leave · /mute [hours] · /unmute");
                    return true;
                case "/list":
                    await ListAsync(cancellationToken);
                    return true;
                case "/open" when words.Length == 2:
                    await OpenAsync(words[1], cancellationToken);
                    return true;
                case "/more":
                    await MoreAsync(cancellationToken);
                    return true;
                case "/reply" or "/edit" or "/delete" or "/members" or "/add" or "/remove" or "/rename" or "/leave" or "/mute" or "/unmute":
                    await ConversationCommandAsync(words[0], words.Length > 1 ? words[1] : "", cancellationToken);
                    return true;
            }

            if (line.StartsWith('/'))
            {
                Write($"unknown command {words[0]}; /help lists them");
                return true;
            }

            if (_open is not { } conv)
            {
                Write("no conversation open: /open <user or id>");
                return true;
            }

            _pendingSends.Add(ConfirmAsync(() => CliRunner.SendTextAsync(client, conv, line, null, Write, cancellationToken), line));
            return true;
        }

        /// <summary>Commands on the open conversation: replies, edits and deletes by number, and group administration.</summary>
        private async Task ConversationCommandAsync(string command, string rest, CancellationToken cancellationToken)
        {
            if (_open is not { } conv)
            {
                Write("no conversation open: /open <user or id>");
                return;
            }

            var parts = rest.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            long? Number() => parts.Length > 0 && long.TryParse(parts[0].TrimStart('#'), CultureInfo.InvariantCulture, out var n) && n > 0 ? n : null;
            var isGroup = Names.IsGroup(conv);
            switch (command)
            {
                case "/reply" when Number() is { } target && parts.Length == 2:
                    _pendingSends.Add(ConfirmAsync(() => CliRunner.SendTextAsync(client, conv, parts[1], target, Write, cancellationToken), $"(reply to #{target}) {parts[1]}"));
                    return;
                case "/edit" when Number() is { } target && parts.Length == 2:
                    _pendingSends.Add(ConfirmAsync(() => CliRunner.EditAsync(client, conv, target, parts[1], Write, cancellationToken), $"(edited #{target}) {parts[1]}"));
                    return;
                case "/delete" when Number() is { } target:
                    _pendingSends.Add(ConfirmAsync(() => client.DeleteAsync(conv, target, cancellationToken), $"(deleted #{target})"));
                    return;
                case "/mute":
                    var hours = parts.Length > 0 && double.TryParse(parts[0], CultureInfo.InvariantCulture, out var h) && h > 0 ? h : (double?)null;
                    await client.MuteAsync(conv, hours is { } forHours ? DateTimeOffset.UtcNow.AddHours(forHours) : null, cancellationToken);
                    _muted.Add(conv);
                    Write(hours is null ? "muted until you unmute it" : $"muted for {hours} h");
                    return;
                case "/unmute":
                    await client.UnmuteAsync(conv, cancellationToken);
                    _muted.Remove(conv);
                    Write("unmuted");
                    return;
                case "/members" when isGroup:
                    var group = await client.GetGroupAsync(conv, cancellationToken);
                    Write($"{group.Name}: {string.Join(", ", group.Members.Select(m => m.Role == Roles.Admin ? $"{m.User} (admin)" : m.User))}");
                    return;
                case "/add" when isGroup && parts.Length > 0:
                    var added = await client.AddMembersAsync(conv, rest.Split(' ', StringSplitOptions.RemoveEmptyEntries), cancellationToken);
                    Write(added.Invited is { Count: > 0 } invited ? $"invited (their privacy asks for it): {string.Join(", ", invited)}" : "added");
                    return;
                case "/remove" when isGroup && parts.Length > 0:
                    await client.RemoveMemberAsync(conv, parts[0], cancellationToken);
                    return;
                case "/rename" when isGroup && rest.Length > 0:
                    await client.RenameGroupAsync(conv, rest, cancellationToken);
                    _names[conv] = rest;
                    return;
                case "/leave" when isGroup:
                    await client.RemoveMemberAsync(conv, me, cancellationToken);
                    return;
                default:
                    Write(isGroup || command is "/reply" or "/edit" or "/delete"
                        ? $"usage: {command} {(command is "/delete" ? "<#>" : command is "/reply" or "/edit" ? "<#> <text>" : "…")}; /help lists them"
                        : $"{command} is for groups");
                    return;
            }
        }

        /// <summary>
        /// Sends in the order the lines were typed: each starts once the one before it is acked (encrypting may first
        /// fetch keys, and a later line must not overtake it), and its ✓ is shown.
        /// </summary>
        private async Task ConfirmAsync(Func<Task<AckFrame>> start, string text)
        {
            var before = _lastSend;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _lastSend = done.Task;
            try
            {
                await before;
                var ack = await start();
                Write($"{Time(ack.Ts)} #{ack.Seq,-5} {me}: {text} ✓");
            }
            catch (SwitchboardException ex)
            {
                Interlocked.Increment(ref _failedSends);
                Write($"not sent: {ex.Message}");
            }
            finally
            {
                done.TrySetResult();
            }
        }

        private Task _lastSend = Task.CompletedTask;

        private async Task ListAsync(CancellationToken cancellationToken)
        {
            var list = await client.GetConversationsAsync(cancellationToken);
            Write(list.Count == 0 ? "no conversations yet" : "conversations:");
            foreach (var c in list)
            {
                _names[c.Conv] = c.Name ?? c.Conv;
                if (c.MutedUntil is not null)
                {
                    _muted.Add(c.Conv);
                }

                Write($"  {c.Name ?? c.Conv,-32} {(c.Unread > 0 ? $"{c.Unread} unread" : ""),-10} {(c.MutedUntil is null ? "" : "muted "),-6}{c.Conv}");
            }
        }

        private async Task OpenAsync(string target, CancellationToken cancellationToken)
        {
            string conv;
            try
            {
                // A name from the conversation list (a group's name), else a handle or an id.
                conv = _names.FirstOrDefault(n => n.Value == target && Names.IsGroup(n.Key)).Key ?? CliRunner.Conversation(target, me);
            }
            catch (UsageException ex)
            {
                Write(ex.Message);
                return;
            }

            var page = await client.GetHistoryAsync(conv, null, 20, cancellationToken);
            _open = conv;
            _oldestShown = page.Messages.Count > 0 ? page.Messages[^1].Seq : long.MaxValue;
            // Where the others are, so your own messages show their ticks as they stand (read before you opened too).
            _othersDelivered = _othersRead = 0;
            if (page.Messages.Count > 0 && (await client.GetReceiptsAsync(conv, page.Messages[0].Seq, cancellationToken)).Where(r => r.User != me).ToList() is { Count: > 0 } others)
            {
                _othersDelivered = others.Min(r => r.Delivered);
                _othersRead = others.Min(r => r.Read);
            }

            Write(NameOf(conv) == conv ? $"── {conv} ──" : $"── {NameOf(conv)} ({conv}) ──");
            foreach (var message in page.Messages.Reverse().Where(m => m.Kind != EventKinds.Key))
            {
                Write(WithTicks(message, await client.ReadableTextAsync(message, cancellationToken)));
            }

            // Read up to the newest message from someone else (marking your own read would only tell them so).
            if (page.Messages.FirstOrDefault(m => m.From != me) is { } newest)
            {
                await client.MarkReadAsync(conv, newest.Seq, cancellationToken);
            }

            if (Names.TryParseDirect(conv, out var a, out var b))
            {
                await client.WatchAsync([a == me ? b : a], cancellationToken);
            }
        }

        private async Task MoreAsync(CancellationToken cancellationToken)
        {
            if (_open is not { } conv || _oldestShown <= 1)
            {
                Write("nothing older");
                return;
            }

            var page = await client.GetHistoryAsync(conv, _oldestShown, 20, cancellationToken);
            if (page.Messages.Count > 0)
            {
                _oldestShown = page.Messages[^1].Seq;
            }

            foreach (var message in page.Messages.Reverse().Where(m => m.Kind != EventKinds.Key))
            {
                Write(WithTicks(message, await client.ReadableTextAsync(message, cancellationToken)));
            }
        }

        private bool _reconnecting;

        private long _othersDelivered;
        private long _othersRead;

        /// <summary>A message as shown; yours with ✓ (stored), ✓✓ (delivered to everyone else) or ✓✓ read.</summary>
        private string WithTicks(MsgFrame message, string? text) =>
            message.From != me || message.Kind is not (EventKinds.Text or EventKinds.Media)
                ? MessageCommands.Format(message, text)
                : MessageCommands.Format(message, text) + (message.Seq <= _othersRead ? " ✓✓ read" : message.Seq <= _othersDelivered ? " ✓✓" : " ✓");

        private async Task ShowEventsAsync(CancellationToken cancellationToken)
        {
            await foreach (var e in client.ReadEventsAsync(cancellationToken))
            {
                switch (e)
                {
                    case MessageReceived { Message.Kind: EventKinds.Key }:
                        break; // a group's key hand-out: nothing to show
                    case MessageReceived { Message: var m } received when m.Conv == _open:
                        Write(MessageCommands.Format(m, received.Text, received.DecryptionError));
                        if (m.From != me)
                        {
                            await client.MarkReadAsync(m.Conv, m.Seq, cancellationToken);
                        }

                        break;
                    case MessageReceived { Message: var m } when !_muted.Contains(m.Conv):
                        Write($"(new in {NameOf(m.Conv)} from {m.From})");
                        break;
                    case ReceiptReceived { Receipt: var r } when r.Conv == _open && r.User != me:
                        if (r.Kind == ReceiptKinds.Read)
                        {
                            _othersRead = Math.Max(_othersRead, r.Seq);
                        }

                        _othersDelivered = Math.Max(_othersDelivered, r.Seq);
                        Write(r.Kind == ReceiptKinds.Read ? $"  read up to #{r.Seq} ({Who(r.User)})" : $"  ✓✓ delivered up to #{r.Seq} ({Who(r.User)})");
                        break;
                    case TypingReceived { Typing: var t } when t.Conv == _open && t.On:
                        Write($"  {t.User} is typing…");
                        break;
                    case PresenceReceived { Presence: var p }:
                        Write(p.Online ? $"  {p.User} is online" : $"  {p.User} was last seen {(p.LastSeen is { } seen ? Time(seen) : "never")}");
                        break;
                    case ConnectionChanged { State: ConnectionState.Reconnecting }:
                        // One line when the link drops, however many attempts it takes, and one when it is back.
                        if (!_reconnecting)
                        {
                            _reconnecting = true;
                            Write("  (connection lost, reconnecting…)");
                        }

                        break;
                    case ConnectionChanged { State: ConnectionState.Live } when _reconnecting:
                        _reconnecting = false;
                        Write("  (reconnected)");
                        break;
                    case ConnectionChanged { State: ConnectionState.Stopped, CloseCode: var code }:
                        Write(code == 4001
                            ? "  (disconnected for good: another socket of this device took over; the chat ends)"
                            : $"  (disconnected for good: close code {code}; the chat ends)");
                        _stopped.TrySetResult();
                        break;
                    case ServerError { Error: var error }:
                        Write($"  server: {error.Code}: {error.Message}");
                        break;
                }
            }
        }

        private static string Who(string user) => user == "*" ? "everyone" : user;

        private static string Time(long ts) => DateTimeOffset.FromUnixTimeMilliseconds(ts).ToLocalTime().ToString("HH:mm", CultureInfo.InvariantCulture);

        private void Write(string line)
        {
            lock (_output)
            {
                if (_typed.Length > 0)
                {
                    // Keep what is being typed below the new line: clear it, write, type it again.
                    Console.Write("\r\u001b[K");
                    Console.WriteLine(line);
                    Console.Write(_typed.ToString());
                }
                else
                {
                    Console.WriteLine(line);
                }
            }
        }

        /// <summary>The line being typed on a terminal (guarded by <see cref="_output"/>).</summary>
        private readonly System.Text.StringBuilder _typed = new();

        /// <summary>When "typing" was last sent for the open conversation; sent again at most every 3 s.</summary>
        private long _typingSentAt;

        private static async Task<string?> NextLineAsync(System.Threading.Channels.ChannelReader<string>? lines, CancellationToken cancellationToken)
        {
            if (lines is null)
            {
                return await Console.In.ReadLineAsync(cancellationToken);
            }

            return await lines.WaitToReadAsync(cancellationToken) && lines.TryRead(out var line) ? line : null;
        }

        /// <summary>
        /// Reads keys on a thread of its own: echoes them, sends <c>typing</c> on the first key (and again every 3 s
        /// while keys come), and hands over each line at Enter. Ctrl+D on an empty line ends the input.
        /// </summary>
        private System.Threading.Channels.ChannelReader<string> StartKeyReader(CancellationToken cancellationToken)
        {
            var channel = System.Threading.Channels.Channel.CreateUnbounded<string>();
            var thread = new Thread(() =>
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    var key = Console.ReadKey(intercept: true);
                    lock (_output)
                    {
                        switch (key.Key)
                        {
                            case ConsoleKey.Enter:
                                Console.WriteLine();
                                channel.Writer.TryWrite(_typed.ToString());
                                _typed.Clear();
                                _typingSentAt = 0;
                                continue;
                            case ConsoleKey.Backspace when _typed.Length > 0:
                                _typed.Length--;
                                Console.Write("\b \b");
                                continue;
                            case ConsoleKey.D when key.Modifiers.HasFlag(ConsoleModifiers.Control) && _typed.Length == 0:
                                channel.Writer.TryComplete();
                                return;
                        }

                        if (key.KeyChar < ' ')
                        {
                            continue;
                        }

                        _typed.Append(key.KeyChar);
                        Console.Write(key.KeyChar);
                    }

                    bool isCommand;
                    lock (_output)
                    {
                        isCommand = _typed.Length > 0 && _typed[0] == '/';
                    }

                    if (_open is { } conv && !isCommand && Environment.TickCount64 - _typingSentAt > 3_000)
                    {
                        _typingSentAt = Environment.TickCount64;
                        _ = client.SetTypingAsync(conv, true, cancellationToken).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                    }
                }
            })
            { IsBackground = true, Name = "chat keys" };
            thread.Start();
            return channel.Reader;
        }
    }
}
