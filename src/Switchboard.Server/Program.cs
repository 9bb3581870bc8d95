using Switchboard.Server.Hosting;

var app = SwitchboardHost.Build(args);
app.Run();

/// <summary>Entry point, visible to tests.</summary>
public partial class Program;
