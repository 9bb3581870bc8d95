using System.CommandLine;
using Switchboard.Client;
using Switchboard.Protocol;

namespace Switchboard.Cli.Commands;

/// <summary>Shared options and the error handling every command gets.</summary>
internal static class CliRunner
{
    public static readonly Option<string?> Url = new("--url") { Description = "Server base URL (default: $SWITCHBOARD_URL, else the one you logged in to, else http://127.0.0.1:5080)" };
    public static readonly Option<string?> Config = new("--config") { Description = "Config file (default: ~/.config/switchboard/config.json)" };

    public const string DefaultUrl = "http://127.0.0.1:5080";

    /// <summary>Gives every leaf command <c>--url</c> and <c>--config</c>.</summary>
    public static void AddCommonOptions(Command command)
    {
        if (command.Subcommands.Count == 0)
        {
            command.Options.Add(Url);
            command.Options.Add(Config);
            return;
        }

        foreach (var sub in command.Subcommands)
        {
            AddCommonOptions(sub);
        }
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    public static Uri ServerUrl(ParseResult parse, CliConfig? config)
    {
        var text = parse.GetValue(Url) ?? NonEmpty(Environment.GetEnvironmentVariable("SWITCHBOARD_URL")) ?? config?.Url ?? DefaultUrl;
        return Uri.TryCreate(text, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
            ? url
            : throw new UsageException($"--url must be an absolute http:// or https:// URL, not '{text}'");
    }

    /// <summary>The saved login, or a clear error telling the user to log in.</summary>
    public static CliConfig RequireLogin(ParseResult parse)
    {
        var path = CliConfig.PathFor(parse.GetValue(Config));
        return CliConfig.Load(path) ?? throw new SwitchboardException(ErrorCodes.Unauthorized, $"not logged in (no {path}): run 'switchboard login <user>' first");
    }

    /// <summary>
    /// A client of the saved device, encrypting end to end with the keys kept beside the config file
    /// (<see cref="KeysPath"/>, mode 600).
    /// </summary>
    public static SwitchboardClient Client(ParseResult parse, CliConfig config, SwitchboardClientOptions? options = null) =>
        new(ServerUrl(parse, config), config.Token, (options ?? new SwitchboardClientOptions()) with
        {
            E2eeStore = new SqliteE2eeStore(KeysPath(parse)),
            Self = new DeviceAddress(config.User, config.Device),
        });

    /// <summary>This device's end-to-end keys and sessions: beside the config file, <c>config.keys.db</c>.</summary>
    public static string KeysPath(ParseResult parse) => Path.ChangeExtension(CliConfig.PathFor(parse.GetValue(Config)), ".keys.db");

    /// <summary>
    /// Sends a text encrypted end to end; when a device of the conversation has published no keys, says so and sends
    /// it readable to the server, as the command line promises.
    /// </summary>
    public static Task<AckFrame> SendTextAsync(SwitchboardClient client, string conv, string text, long? replyTo, Action<string> say, CancellationToken cancellationToken) =>
        EncryptedOrSaidAsync(
            () => client.SendTextAsync(conv, text, replyTo, cancellationToken),
            () => client.SendAsync(conv, EventKinds.Text, text, replyTo: replyTo, cancellationToken: cancellationToken),
            say);

    /// <summary>An edit, encrypted end to end when every device has keys (else said, and sent readable).</summary>
    public static Task<AckFrame> EditAsync(SwitchboardClient client, string conv, long target, string text, Action<string> say, CancellationToken cancellationToken) =>
        EncryptedOrSaidAsync(
            () => client.EditAsync(conv, target, text, cancellationToken: cancellationToken),
            () => client.EditAsync(conv, target, text, encrypt: false, cancellationToken: cancellationToken),
            say);

    private static async Task<AckFrame> EncryptedOrSaidAsync(Func<Task<AckFrame>> encrypted, Func<Task<AckFrame>> readable, Action<string> say)
    {
        try
        {
            return await encrypted();
        }
        catch (SwitchboardException ex) when (ex.Code == Switchboard.Client.E2ee.E2eeErrorCodes.NoKeys)
        {
            say($"warning: {ex.Message}; sending without end-to-end encryption");
            return await readable();
        }
    }

    /// <summary>A conversation id from what a person types: a handle means the direct conversation with them.</summary>
    public static string Conversation(string target, string me) =>
        target.StartsWith(Names.DirectPrefix, StringComparison.Ordinal) || target.StartsWith(Names.GroupPrefix, StringComparison.Ordinal)
            ? target
            : Names.IsValidHandle(target) && target != me
                ? Names.DirectConversation(me, target)
                : throw new UsageException($"'{target}' is neither a user handle nor a conversation id (dm:… or grp:…)");

    private static volatile bool _interrupted;

    static CliRunner()
    {
        Console.CancelKeyPress += (_, _) => _interrupted = true;
    }

    /// <summary>Runs a command body and turns failures into one line on stderr and an exit code.</summary>
    public static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return ExitCodes.Usage;
        }
        catch (SwitchboardException ex)
        {
            var retry = ex.RetryAfter is { } wait ? $" (try again in {Math.Ceiling(wait.TotalSeconds):0} s)" : "";
            await Console.Error.WriteLineAsync($"error: {ex.Message}{retry}");
            return ex.Code switch
            {
                ErrorCodes.Unauthorized or "replaced" => ExitCodes.Unauthorized,
                ErrorCodes.NotFound or ErrorCodes.Forbidden => ExitCodes.NotFound,
                ErrorCodes.Unavailable => ExitCodes.Unavailable,
                _ => ExitCodes.Refused,
            };
        }
        catch (OperationCanceledException) when (Console.IsInputRedirected is false && _interrupted)
        {
            return 130; // interrupted (Ctrl+C), as shells report it
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutException or TaskCanceledException or System.Net.WebSockets.WebSocketException)
        {
            await Console.Error.WriteLineAsync($"error: cannot reach the server: {ex.Message}");
            return ExitCodes.Unavailable;
        }
    }

    /// <summary>Reads a password: from the option, else $SWITCHBOARD_PASSWORD, else the first line of standard input.</summary>
    public static string Password(string? given)
    {
        if (!string.IsNullOrEmpty(given))
        {
            return given;
        }

        if (Environment.GetEnvironmentVariable("SWITCHBOARD_PASSWORD") is { Length: > 0 } fromEnv)
        {
            return fromEnv;
        }

        if (!Console.IsInputRedirected)
        {
            Console.Error.Write("password: ");
        }

        return Console.ReadLine() is { Length: > 0 } line ? line : throw new UsageException("a password is needed (--password, $SWITCHBOARD_PASSWORD or standard input)");
    }
}

internal sealed class UsageException(string message) : Exception(message)
{
    public UsageException()
        : this("usage error")
    {
    }

    public UsageException(string message, Exception inner)
        : this(message + ": " + inner.Message)
    {
    }
}
