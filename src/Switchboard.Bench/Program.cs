using System.CommandLine;
using Switchboard.Bench;

// The generator's socket completions run on the socket event threads, not a thread-pool hop per frame: it shares
// the machine with the server, and each hop was a context switch taken from the server's share. .NET reads this
// once, at the first socket.
Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
var parsed = BenchCommands.Create().Parse(args);
try
{
    var code = await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    return parsed.Errors.Count > 0 ? 2 : code;
}
catch (Exception ex) when (ex is InvalidOperationException or HttpRequestException or System.Net.Sockets.SocketException or TimeoutException)
{
    // A refused sign-up, a server that is not there: one line, not a stack trace.
    await Console.Error.WriteLineAsync($"error: {ex.Message}");
    return 1;
}
