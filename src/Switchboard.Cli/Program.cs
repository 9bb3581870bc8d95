using System.CommandLine;
using Switchboard.Cli.Bench;

var root = new RootCommand("switchboard: client, admin and load generator for a Switchboard server")
{
    // Load generator: every workload lives in Bench/ (BenchCommands builds the command tree).
    BenchCommands.Create(),
};
return await root.Parse(args).InvokeAsync();
