using System.CommandLine;
using Switchboard.Cli.Bench;
using Switchboard.Cli.Commands;

if (args.Length > 0 && args[0] == "bench")
{
    // The generator's socket completions run on the socket event threads, not a thread-pool hop per frame: it
    // shares the machine with the server, and each hop was a context switch taken from the server's share.
    // .NET reads this once, at the first socket.
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

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

// Load generator: every workload lives in Bench/ (BenchCommands builds the command tree).
root.Subcommands.Add(BenchCommands.Create());
var parsed = root.Parse(args);
var code = await parsed.InvokeAsync();
// A missing argument or an unknown command is a usage error: 2, as the README says (System.CommandLine gives 1).
return parsed.Errors.Count > 0 ? ExitCodes.Usage : code;
