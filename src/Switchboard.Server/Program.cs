using Switchboard.Server.Hosting;

// A failure to start is one line naming the key, path or address, and an exit code of its own (Launcher.ExitCodes).
return Launcher.Run(args);

/// <summary>Entry point, visible to tests.</summary>
public partial class Program;
