using Switchboard.Server.Hosting;

WebApplication app;
try
{
    app = SwitchboardHost.Build(args);
}
catch (InvalidOperationException ex)
{
    // A bad setting stops the process with one clear line, not a stack trace.
    Console.Error.WriteLine($"switchboard: configuration error: {ex.Message}");
    return 2;
}

app.Run();
return 0;

/// <summary>Entry point, visible to tests.</summary>
public partial class Program;
