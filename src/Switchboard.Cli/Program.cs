using System.CommandLine;
using Switchboard.Cli.Bench;
using Switchboard.Cli.Commands;

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
return await root.Parse(args).InvokeAsync();
