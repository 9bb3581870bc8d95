using Switchboard.Bench;

// The generator's socket completions run on the socket event threads, not a thread-pool hop per frame: it shares
// the machine with the server, and each hop was a context switch taken from the server's share. .NET reads this
// once, at the first socket.
Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
var bench = BenchCommands.Create();
var parsed = bench.Parse(args);
var code = await parsed.InvokeAsync();
return parsed.Errors.Count > 0 ? 2 : code;
