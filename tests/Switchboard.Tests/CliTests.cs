using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;

namespace Switchboard.Tests;

/// <summary>The real <c>switchboard</c> command, run as a process against a real server.</summary>
public sealed class CliTests(ServerFixture fixture) : IClassFixture<ServerFixture>, IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "switchboard-cli-" + Guid.NewGuid().ToString("N"));
    private TestServer Server => fixture.Server;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_home, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string ConfigOf(string user) => Path.Combine(_home, user, "config.json");

    private async Task<(int Code, string Out, string Err)> RunAsync(string? user, string? stdin, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        info.ArgumentList.Add(CliDll());
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        if (!args.Contains("--url"))
        {
            info.ArgumentList.Add("--url");
            info.ArgumentList.Add(Server.Address.ToString());
        }

        if (user is not null)
        {
            info.ArgumentList.Add("--config");
            info.ArgumentList.Add(ConfigOf(user));
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }

        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output, await error);
    }

    private static string CliDll()
    {
        var config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
        var path = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "Switchboard.Cli", config, "switchboard.dll"));
        return File.Exists(path) ? path : throw new FileNotFoundException("switchboard.dll not built next to the tests", path);
    }

    private async Task<string> LoggedInAsync()
    {
        var user = TestServer.NewUser("cli");
        var (code, output, _) = await RunAsync(user, null, "register", user, "--password", "correct horse");
        Assert.Equal(0, code);
        Assert.Contains("registered", output);
        (code, output, _) = await RunAsync(user, "correct horse\n", "login", user, "--name", "test laptop");
        Assert.Equal(0, code);
        Assert.Contains("logged in as", output);
        return user;
    }

    [Fact]
    public async Task Register_login_send_and_history_work_from_the_command_line()
    {
        var alice = await LoggedInAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(ConfigOf(alice)));
        var bob = await Server.NewClientAsync();

        var (code, output, error) = await RunAsync(alice, null, "send", bob.User, "hello", "from", "the", "cli");
        Assert.True(code == 0, error);
        Assert.Contains("✓", output);
        var msg = await bob.ExpectAsync("msg");
        Assert.Equal("hello from the cli", msg.GetProperty("body").GetString());

        await bob.SendAckedAsync(Conv.Direct(alice, bob.User), "hi back");
        (code, output, _) = await RunAsync(alice, null, "history", bob.User);
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("hello from the cli", lines[0]);
        Assert.Contains("hi back", lines[1]);

        (code, output, _) = await RunAsync(alice, null, "conversations");
        Assert.Equal(0, code);
        Assert.Contains(Conv.Direct(alice, bob.User), output);
        (code, output, _) = await RunAsync(alice, null, "devices", "list");
        Assert.Equal(0, code);
        Assert.Contains("test laptop", output);
    }

    [Fact]
    public async Task Between_two_logged_in_users_the_cli_encrypts_end_to_end_and_the_server_holds_no_text()
    {
        await using var server = await TestServer.StartAsync(); // its data directory holds this test's data alone
        var url = server.Address.ToString();
        async Task<string> LoginAsync()
        {
            var user = TestServer.NewUser("cli");
            Assert.Equal(0, (await RunAsync(user, null, "register", user, "--password", "correct horse", "--url", url)).Code);
            var (code, output, error) = await RunAsync(user, "correct horse\n", "login", user, "--url", url);
            Assert.True(code == 0, error);
            Assert.Contains("end-to-end keys made and published", output);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.ChangeExtension(ConfigOf(user), ".keys.db")));
            return user;
        }

        var alice = await LoginAsync();
        var bob = await LoginAsync();
        var canary = $"canary-{Guid.NewGuid():N}";
        var (sent, sentOut, sentError) = await RunAsync(alice, null, "send", bob, canary, "--url", url);
        Assert.True(sent == 0, sentError);
        Assert.Contains("🔒", sentOut);
        Assert.DoesNotContain("warning", sentError);
        Assert.Equal(0, (await RunAsync(bob, null, "send", alice, canary + "-reply", "--url", url)).Code);

        // Each reads the conversation by its own keys; the server's history has ciphertext only.
        var (_, bobReads, _) = await RunAsync(bob, null, "history", alice, "--url", url);
        Assert.Contains(canary, bobReads);
        Assert.Contains(canary + "-reply", bobReads);
        var (_, aliceReads, _) = await RunAsync(alice, null, "history", bob, "--url", url);
        Assert.Contains(canary + "-reply", aliceReads);
        var stranger = await server.NewClientAsync();
        Assert.DoesNotContain(canary, (await server.GetAsync($"/v1/conversations/{Conv.Direct(alice, bob)}/messages", stranger.Token)).Body.GetRawText());

        // The same safety number on both sides.
        var (v1, aliceNumber, e1) = await RunAsync(alice, null, "verify", bob, "--url", url);
        var (v2, bobNumber, e2) = await RunAsync(bob, null, "verify", alice, "--url", url);
        Assert.True(v1 == 0 && v2 == 0, e1 + e2);
        var digits = System.Text.RegularExpressions.Regex.Match(aliceNumber, "([0-9]{5} ){11}[0-9]{5}").Value;
        Assert.NotEmpty(digits);
        Assert.Contains(digits, bobNumber);

        // Nowhere in what the server wrote: its database, its write-ahead log, its logs.
        Assert.Empty(server.FilesHolding(canary));
    }

    [Fact]
    public async Task Sending_to_a_device_without_keys_says_so_and_sends_readable()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.NewClientAsync(); // a raw client: it published no keys
        var (code, output, error) = await RunAsync(alice, null, "send", bob.User, "plain", "then");
        Assert.True(code == 0, error);
        Assert.Contains("no keys published", error);
        Assert.DoesNotContain("🔒", output);
        Assert.Equal("plain then", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
    }

    [Fact]
    public async Task Groups_can_be_made_and_shown()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.RegisterAsync();
        var (code, output, error) = await RunAsync(alice, null, "groups", "create", "cli group", bob);
        Assert.True(code == 0, error);
        var conv = output.Split(' ', 2)[0];
        Assert.StartsWith("grp:", conv);
        (code, output, _) = await RunAsync(alice, null, "groups", "show", conv);
        Assert.Equal(0, code);
        Assert.Contains($"{alice}  (admin)", output);
        Assert.Contains(bob, output);
        (code, _, _) = await RunAsync(alice, null, "send", conv, "to the group");
        Assert.Equal(0, code);

        // Listed by name, not only by id.
        (code, output, _) = await RunAsync(alice, null, "conversations");
        Assert.Equal(0, code);
        Assert.Contains(output.Split('\n'), line => line.StartsWith("cli group", StringComparison.Ordinal) && line.Contains(conv, StringComparison.Ordinal));
        (code, output, _) = await RunAsync(alice, null, "groups", "list");
        Assert.Equal(0, code);
        Assert.StartsWith("cli group", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Chat_driven_through_standard_input_sends_and_shows_ticks()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.NewClientAsync();
        await bob.SendAckedAsync(Conv.Direct(alice, bob.User), "earlier message");
        var (code, output, error) = await RunAsync(alice, "first line\nsecond line\n/quit\n", "chat", bob.User);
        Assert.True(code == 0, error);
        Assert.Contains("earlier message", output);
        Assert.Contains("first line ✓", output);
        Assert.Contains("second line ✓", output);
        Assert.Single(output.Split('\n'), l => l.Contains("first line", StringComparison.Ordinal)); // your own message once
        Assert.Equal("first line", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
        Assert.Equal("second line", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
    }

    [Fact]
    public async Task Chat_replies_edits_and_deletes_by_number_and_shows_ticks_of_earlier_messages()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.NewClientAsync();
        var conv = Conv.Direct(alice, bob.User);
        Assert.Equal(0, (await RunAsync(alice, null, "send", bob.User, "read before the chat")).Code);
        Assert.Equal(0, (await RunAsync(alice, null, "send", bob.User, "not read yet")).Code);
        await bob.ExpectAsync("msg");
        await bob.ExpectAsync("msg");
        await bob.SendAsync(new { t = "recv", conv, seq = 2 });
        await bob.SendAsync(new { t = "read", conv, seq = 1 });

        // Wait until both are stored: the chat reads them when it opens the conversation.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await Server.GetAsync($"/v1/conversations/{conv}/receipts?seq=1", bob.Token)).Body.EnumerateArray()
               .All(r => r.GetProperty("user").GetString() != bob.User || r.GetProperty("read").GetInt64() < 1 || r.GetProperty("delivered").GetInt64() < 2))
        {
            Assert.True(DateTime.UtcNow < deadline);
            await Task.Delay(50);
        }

        var (code, output, error) = await RunAsync(alice, "/reply 1 answering\n/edit 2 not read yet, edited\n/delete 1\n/quit\n", "chat", bob.User);
        Assert.True(code == 0, error);
        Assert.Contains("read before the chat ✓✓ read", output);
        Assert.Contains("not read yet ✓✓", output);
        Assert.DoesNotContain("not read yet ✓✓ read", output);
        var reply = await bob.ExpectAsync("msg");
        Assert.Equal(1, reply.GetProperty("reply_to").GetInt64());
        var edit = await bob.ExpectAsync("msg");
        Assert.Equal(("edit", 2L), (edit.GetProperty("kind").GetString(), edit.GetProperty("target").GetInt64()));
        var delete = await bob.ExpectAsync("msg");
        Assert.Equal(("delete", 1L), (delete.GetProperty("kind").GetString(), delete.GetProperty("target").GetInt64()));
    }

    [Fact]
    public async Task Chat_on_a_terminal_sends_typing_while_a_line_is_typed()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.NewClientAsync();
        await bob.SendAckedAsync(Conv.Direct(alice, bob.User), "hi alice");
        // A pseudo-terminal (util-linux `script`), so the chat reads keys one by one as it does for a person.
        var command = $"dotnet {CliDll()} chat {bob.User} --url {Server.Address} --config {ConfigOf(alice)}";
        var info = new ProcessStartInfo("script") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "-qefc", command, "/dev/null" })
        {
            info.ArgumentList.Add(arg);
        }

        using var chat = Process.Start(info)!;
        var screen = new StringBuilder();
        var reading = Task.Run(async () =>
        {
            var buffer = new char[4096];
            int n;
            while ((n = await chat.StandardOutput.ReadAsync(buffer)) > 0)
            {
                lock (screen)
                {
                    screen.Append(buffer, 0, n);
                }
            }
        });
        async Task WaitForAsync(string text)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                lock (screen)
                {
                    if (screen.ToString().Contains(text, StringComparison.Ordinal))
                    {
                        return;
                    }
                }

                Assert.True(DateTime.UtcNow < deadline && !chat.HasExited, $"never saw '{text}': {screen}");
                await Task.Delay(50);
            }
        }

        await WaitForAsync($"── {bob.User}");
        await chat.StandardInput.WriteAsync("hel");
        await chat.StandardInput.FlushAsync();
        var typing = await bob.ExpectAsync("typing");
        Assert.Equal(alice, typing.GetProperty("user").GetString());
        Assert.True(typing.GetProperty("on").GetBoolean());
        await chat.StandardInput.WriteAsync("lo\r");
        await chat.StandardInput.FlushAsync();
        Assert.Equal("hello", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
        await WaitForAsync("hello ✓");
        await chat.StandardInput.WriteAsync("/quit\r");
        await chat.StandardInput.FlushAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await chat.WaitForExitAsync(timeout.Token);
        Assert.Equal(0, chat.ExitCode);
        await reading;
    }

    [Fact]
    public async Task A_chat_says_once_that_the_link_dropped_and_once_that_it_is_back()
    {
        var port = ServerProcess.FreePort();
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-cli-restart-" + Guid.NewGuid().ToString("N"));
        var settings = new Dictionary<string, string?> { ["urls"] = $"http://127.0.0.1:{port}" };
        var server = await TestServer.StartAsync(settings, dataDir);
        var user = TestServer.NewUser("cli");
        await server.RegisterAsync(user);
        var (device, token) = await server.LinkAsync(user);
        Directory.CreateDirectory(Path.GetDirectoryName(ConfigOf(user))!);
        await File.WriteAllTextAsync(ConfigOf(user), System.Text.Json.JsonSerializer.Serialize(new { url = server.Address.ToString().TrimEnd('/'), user, device, token }));

        using var chat = LiveChat.Start(CliDll(), "chat", "--config", ConfigOf(user));
        var (lines, process) = (chat.Lines, chat.Process);
        Task WaitForAsync(string text) => chat.WaitForAsync(text, TimeSpan.FromSeconds(60));

        try
        {
            await WaitForAsync("open a conversation");
            await server.StopAsync(); // the server goes away (its sockets closed with 4003), for a few seconds
            await WaitForAsync("connection lost");
            await Task.Delay(TimeSpan.FromSeconds(3)); // several reconnect attempts fail meanwhile
            await using var again = await TestServer.StartAsync(settings, dataDir);
            await WaitForAsync("(reconnected)");
            Assert.Single(lines, l => l.Contains("connection lost", StringComparison.Ordinal));
            await process.StandardInput.WriteLineAsync("/quit");
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(timeout.Token);
            Assert.Equal(0, process.ExitCode);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Errors_have_clear_messages_and_exit_codes()
    {
        var nobody = TestServer.NewUser("none");
        var (code, _, error) = await RunAsync(nobody, null, "send", "someone", "hi");
        Assert.Equal(3, code); // not logged in
        Assert.Contains("login", error);

        var alice = await LoggedInAsync();
        (code, _, error) = await RunAsync(alice, null, "send", "nobody-" + Guid.NewGuid().ToString("N")[..6], "hi");
        Assert.Equal(4, code);
        Assert.Contains("not_found", error);

        (code, _, error) = await RunAsync(alice, null, "send", "Not A Handle!", "hi");
        Assert.Equal(2, code);

        (code, _, _) = await RunAsync(null, null, "register", alice, "--password", "correct horse");
        Assert.Equal(1, code); // taken

        (code, var help, _) = await RunAsync(null, null, "send", "--help");
        Assert.Equal(0, code);
        Assert.Contains("durable", help);
    }

    [Fact]
    public async Task A_one_shot_send_leaves_an_open_chat_of_the_same_device_running_and_a_bad_open_is_shown_not_fatal()
    {
        var alice = await LoggedInAsync();
        var bob = await Server.NewClientAsync();
        using var chat = LiveChat.Start(CliDll(), "chat", bob.User, "--url", Server.Address.ToString(), "--config", ConfigOf(alice));
        var (lines, process) = (chat.Lines, chat.Process);
        Task WaitForAsync(string text) => chat.WaitForAsync(text, TimeSpan.FromSeconds(30));

        await WaitForAsync("conversations"); // the list, then the socket
        await process.StandardInput.WriteLineAsync("/open nobody-" + Guid.NewGuid().ToString("N")[..6]);
        await WaitForAsync("error:");
        await process.StandardInput.WriteLineAsync("/open " + bob.User);

        // Another terminal, the same login and so the same device: the chat keeps its socket and shows the message.
        var (code, _, error) = await RunAsync(alice, null, "send", bob.User, "from another terminal");
        Assert.True(code == 0, error);
        await WaitForAsync("from another terminal");
        await process.StandardInput.WriteLineAsync("typed in the chat");
        await WaitForAsync("typed in the chat ✓");
        await process.StandardInput.WriteLineAsync("/quit");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        Assert.Equal(0, process.ExitCode);
        Assert.DoesNotContain(lines, l => l.Contains("disconnected", StringComparison.Ordinal));
        Assert.Equal("from another terminal", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
        Assert.Equal("typed in the chat", (await bob.ExpectAsync("msg")).GetProperty("body").GetString());
    }

    [Fact]
    public async Task Logging_in_again_keeps_this_machines_device_while_its_token_works()
    {
        var alice = await LoggedInAsync();
        var (code, output, _) = await RunAsync(alice, "correct horse\n", "login", alice);
        Assert.Equal(0, code);
        Assert.Contains("already logged in", output);
        (code, output, _) = await RunAsync(alice, null, "devices", "list");
        Assert.Equal(0, code);
        Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // Unlinked elsewhere: login links a new device.
        var config = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(ConfigOf(alice))).RootElement;
        var token = config.GetProperty("token").GetString()!;
        var (status, _) = await Server.CallAsync(HttpMethod.Delete, $"/v1/devices/{config.GetProperty("device").GetInt32()}", token);
        Assert.Equal(HttpStatusCode.NoContent, status);
        (code, output, _) = await RunAsync(alice, "correct horse\n", "login", alice);
        Assert.Equal(0, code);
        Assert.Contains("logged in as", output);
        Assert.DoesNotContain("already", output);
    }

    [Fact]
    public async Task Usage_errors_exit_2_a_server_that_is_down_exits_5_and_SWITCHBOARD_URL_finds_the_server()
    {
        Assert.Equal(2, (await RunAsync(null, null, "sendx")).Code); // unknown command
        Assert.Equal(2, (await RunAsync(null, null, "send")).Code);  // missing arguments

        var alice = await LoggedInAsync();
        var closed = ServerProcess.FreePort();
        var (code, _, error) = await RunAsync(alice, null, "send", "someone", "hi", "--url", $"http://127.0.0.1:{closed}");
        Assert.Equal(5, code);
        Assert.Contains("127.0.0.1", error);
        (code, _, _) = await RunAsync(alice, "/quit\n", "chat", "someone", "--url", $"http://127.0.0.1:{closed}");
        Assert.Equal(5, code);

        // No --url: the environment names the server.
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var user = TestServer.NewUser("env");
        foreach (var arg in new[] { CliDll(), "register", user, "--password", "correct horse" })
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["SWITCHBOARD_URL"] = Server.Address.ToString();
        using var process = Process.Start(info)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, output + await process.StandardError.ReadToEndAsync());
        Assert.Equal(HttpStatusCode.Created, (await Server.Http.PostAsJsonAsync("/v1/devices", new { user, password = "correct horse", name = "check" })).StatusCode);
    }

    // The load generator speaks WebSocket over its own sockets: these runs check that its connection handshakes,
    // frames and reads like any client, and that its reports add up (nothing lost on a healthy server).
    [Fact]
    public async Task Bench_direct_on_a_schedule_delivers_everything_it_acks()
    {
        var (code, output, error) = await RunAsync(null, null, "bench", "direct", "--pairs", "2", "--window", "16", "--rate", "400", "--duration", "1", "--warmup", "0", "--json");
        Assert.True(code == 0, error);
        using var report = System.Text.Json.JsonDocument.Parse(output);
        var root = report.RootElement;
        Assert.True(root.GetProperty("acked").GetInt64() >= 300, output);
        Assert.Equal(root.GetProperty("acked").GetInt64(), root.GetProperty("received").GetInt64());
        Assert.Equal(0, root.GetProperty("lost").GetInt64());
        Assert.Equal(0, root.GetProperty("duplicates").GetInt64());
    }

    [Fact]
    public async Task Bench_direct_with_many_users_answers_each_read_and_reports_bytes_written()
    {
        var (code, output, error) = await RunAsync(null, null, "bench", "direct", "--users", "12", "--contacts", "3", "--read-fraction", "0.5",
            "--window", "16", "--rate", "300", "--duration", "1", "--warmup", "0", "--parallel", "4", "--json");
        Assert.True(code == 0, error);
        using var report = System.Text.Json.JsonDocument.Parse(output);
        var root = report.RootElement;
        Assert.True(root.GetProperty("acked").GetInt64() >= 200, output);
        Assert.Equal(root.GetProperty("acked").GetInt64(), root.GetProperty("received").GetInt64());
        Assert.Equal(0, root.GetProperty("lost").GetInt64());
        Assert.Equal(0, root.GetProperty("out_of_order").GetInt64());
        Assert.True(root.GetProperty("recv_frames").GetInt64() > 0, output);
        Assert.True(root.GetProperty("read_frames").GetInt64() > 0, output);
        // Each user talks to 3 contacts: at most 12 × 3 directed pairs, so far fewer conversations than messages.
        Assert.InRange(root.GetProperty("conversations_touched").GetInt64(), 1, 12 * 3 * 2);
        Assert.True(root.GetProperty("disk_bytes_per_msg").GetDouble() >= 0, output);
    }

    [Fact]
    public async Task Bench_reconnect_and_group_complete_with_nothing_lost()
    {
        var (code, output, error) = await RunAsync(null, null, "bench", "reconnect", "--clients", "20", "--messages", "3", "--json");
        Assert.True(code == 0, error);
        using (var report = System.Text.Json.JsonDocument.Parse(output))
        {
            Assert.Equal(20, report.RootElement.GetProperty("complete_clients").GetInt64());
            Assert.Equal(0, report.RootElement.GetProperty("lost").GetInt64());
        }

        (code, output, error) = await RunAsync(null, null, "bench", "group", "--members", "12", "--posts", "5", "--warmup-posts", "1", "--json");
        Assert.True(code == 0, error);
        using (var report = System.Text.Json.JsonDocument.Parse(output))
        {
            Assert.Equal(0, report.RootElement.GetProperty("incomplete_posts").GetInt64());
        }
    }

    /// <summary>A `switchboard chat` process fed through standard input, its output lines collected as they come.</summary>
    private sealed class LiveChat : IDisposable
    {
        private LiveChat(Process process) => Process = process;

        public Process Process { get; }

        public System.Collections.Concurrent.ConcurrentQueue<string> Lines { get; } = new();

        public static LiveChat Start(params string[] args)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, StandardOutputEncoding = Encoding.UTF8 };
            foreach (var arg in args)
            {
                info.ArgumentList.Add(arg);
            }

            var chat = new LiveChat(Process.Start(info)!);
            chat.Process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    chat.Lines.Enqueue(e.Data);
                }
            };
            chat.Process.BeginOutputReadLine();
            chat.Process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    chat.Lines.Enqueue("stderr: " + e.Data);
                }
            };
            chat.Process.BeginErrorReadLine();
            return chat;
        }

        public async Task WaitForAsync(string text, TimeSpan within)
        {
            var deadline = DateTime.UtcNow + within;
            while (!Lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                Assert.True(DateTime.UtcNow < deadline && !Process.HasExited, $"chat never printed '{text}': {string.Join(" | ", Lines)}");
                await Task.Delay(50);
            }
        }

        public void Dispose() => Process.Dispose();
    }
}
