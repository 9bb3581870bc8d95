using System.CommandLine;
using Switchboard.Cli.Commands;

if (args.Length > 0 && args[0] == "bench")
{
    // The load generator is a program of its own (src/Switchboard.Bench): run it with the rest of the line.
    return await BenchLauncher.RunAsync(args[1..]);
}

// Socket completions run on the thread pool, never inline on the socket engine's threads (as a server started in the
// same environment may ask): the client reads and writes its SQLite key store on those completions, and a store
// waiting on another process's lock would stall every socket of this process.
Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "0");

var root = new RootCommand("switchboard: client, admin and load generator for a Switchboard server");

// The client: a device like any other, talking to the server through the SDK.
var clientCommands = new List<Command>();
clientCommands.AddRange(AccountCommands.Create());
clientCommands.AddRange(MessageCommands.Create());
clientCommands.Add(GroupCommands.Create());
clientCommands.Add(ChatCommand.Create());
foreach (var command in clientCommands)
{
    CliRunner.AddCommonOptions(command);
    root.Subcommands.Add(command);
}

// Load generator: listed here, run as its own program (`switchboard bench --help` lists its workloads).
var bench = new Command("bench", "Load generator: measures a running server (`switchboard bench --help`)");
bench.SetAction((_, _) => BenchLauncher.RunAsync([]));
root.Subcommands.Add(bench);
var parsed = root.Parse(args);
var code = await parsed.InvokeAsync();
// A missing argument or an unknown command is a usage error: 2, as the README says (System.CommandLine gives 1).
return parsed.Errors.Count > 0 ? ExitCodes.Usage : code;
