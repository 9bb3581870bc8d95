using System.CommandLine;
using Switchboard.Client;

namespace Switchboard.Cli.Commands;

/// <summary><c>register</c>, <c>login</c>, <c>logout</c> and <c>devices</c>.</summary>
internal static class AccountCommands
{
    public static IEnumerable<Command> Create()
    {
        var user = new Argument<string>("user") { Description = "Your handle: 3–32 of a-z 0-9 _ . -, starting with a letter or digit" };
        var password = new Option<string?>("--password") { Description = "Password (else $SWITCHBOARD_PASSWORD, else read from standard input)" };
        var register = new Command("register", "Create an account") { user, password };
        register.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var url = CliRunner.ServerUrl(parse, CliConfig.Load(CliConfig.PathFor(parse.GetValue(CliRunner.Config))));
            await SwitchboardClient.RegisterAsync(url, parse.GetValue(user)!, CliRunner.Password(parse.GetValue(password)), cancellationToken: ct);
            Console.WriteLine($"registered {parse.GetValue(user)}; now run: switchboard login {parse.GetValue(user)}");
            return ExitCodes.Ok;
        }));

        var loginUser = new Argument<string>("user") { Description = "Your handle" };
        var loginPassword = new Option<string?>("--password") { Description = "Password (else $SWITCHBOARD_PASSWORD, else read from standard input)" };
        var deviceName = new Option<string>("--name") { Description = "A name for this device", DefaultValueFactory = _ => $"cli@{Environment.MachineName}" };
        var login = new Command("login", "Link this machine as a device and remember its token (file mode 600); kept when already linked") { loginUser, loginPassword, deviceName };
        login.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var path = CliConfig.PathFor(parse.GetValue(CliRunner.Config));
            var url = CliRunner.ServerUrl(parse, null);
            // This machine is already a device of that user on that server, and its token still works: keep it,
            // rather than link one more device each time (a user may have at most 16).
            if (CliConfig.Load(path) is { } saved && saved.User == parse.GetValue(loginUser) && saved.Url == url.ToString().TrimEnd('/'))
            {
                await using var existing = CliRunner.Client(parse, saved);
                try
                {
                    await existing.GetDevicesAsync(ct);
                    await existing.PublishKeysAsync(ct); // made and published if they were missing
                    Console.WriteLine($"already logged in as {saved.User}, device {saved.Device} ({path}); `switchboard logout` first to link this machine anew");
                    return ExitCodes.Ok;
                }
                catch (SwitchboardException ex) when (ex.Status == 401)
                {
                    // unlinked meanwhile: link again below
                }
            }

            var linked = await SwitchboardClient.LinkDeviceAsync(url, parse.GetValue(loginUser)!, CliRunner.Password(parse.GetValue(loginPassword)), parse.GetValue(deviceName)!, cancellationToken: ct);
            var config = new CliConfig(url.ToString().TrimEnd('/'), linked.User, linked.Device, linked.Token);
            config.Save(path);
            DeleteKeys(parse); // a new device: new keys, never the last device's
            await using (var client = CliRunner.Client(parse, config))
            {
                await client.PublishKeysAsync(ct);
            }

            Console.WriteLine($"logged in as {linked.User}, device {linked.Device} (saved to {path}); end-to-end keys made and published ({CliRunner.KeysPath(parse)})");
            return ExitCodes.Ok;
        }));

        var logout = new Command("logout", "Unlink this device and forget its token");
        logout.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using (var client = CliRunner.Client(parse, config))
            {
                await client.UnlinkDeviceAsync(config.Device, ct);
            }

            File.Delete(CliConfig.PathFor(parse.GetValue(CliRunner.Config)));
            DeleteKeys(parse);
            Console.WriteLine($"logged out; device {config.Device} unlinked");
            return ExitCodes.Ok;
        }));

        var list = new Command("list", "List your linked devices");
        list.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using var client = CliRunner.Client(parse, config);
            foreach (var device in await client.GetDevicesAsync(ct))
            {
                Console.WriteLine($"{device.Device,4}  {device.Name,-32} linked {DateTimeOffset.FromUnixTimeMilliseconds(device.Created):yyyy-MM-dd HH:mm}{(device.Current ? "  (this one)" : "")}");
            }

            return ExitCodes.Ok;
        }));

        var number = new Argument<int>("device") { Description = "Device number (see 'devices list')" };
        var unlink = new Command("unlink", "Unlink a device: its token stops working and its socket is closed") { number };
        unlink.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using var client = CliRunner.Client(parse, config);
            await client.UnlinkDeviceAsync(parse.GetValue(number), ct);
            Console.WriteLine($"device {parse.GetValue(number)} unlinked");
            return ExitCodes.Ok;
        }));

        var peer = new Argument<string>("user") { Description = "The user whose safety number to show" };
        var verify = new Command("verify", "Show the safety number of you and a user: compare it with theirs, in person or on a call") { peer };
        verify.SetAction((parse, ct) => CliRunner.RunAsync(async () =>
        {
            var config = CliRunner.RequireLogin(parse);
            await using var client = CliRunner.Client(parse, config);
            var number = await client.GetSafetyNumberAsync(parse.GetValue(peer)!, ct);
            Console.WriteLine($"safety number of {config.User} and {parse.GetValue(peer)}:");
            Console.WriteLine(number);
            Console.WriteLine("the same on both sides: nobody is in between. It changes when either of you links a device or gets new keys.");
            return ExitCodes.Ok;
        }));

        return [register, login, logout, new Command("devices", "Your linked devices") { list, unlink }, verify];
    }

    /// <summary>Deletes this device's end-to-end keys file (and SQLite's side files).</summary>
    private static void DeleteKeys(ParseResult parse)
    {
        var keys = CliRunner.KeysPath(parse);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        foreach (var file in new[] { keys, keys + "-wal", keys + "-shm" })
        {
            File.Delete(file);
        }
    }
}
