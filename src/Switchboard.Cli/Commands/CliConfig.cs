using System.Text.Json;
using System.Text.Json.Serialization;

namespace Switchboard.Cli.Commands;

/// <summary>What <c>switchboard login</c> remembers: the server and this device's token.</summary>
internal sealed record CliConfig(string Url, string User, int Device, string Token)
{
    /// <summary>
    /// The config file: <c>--config</c>, else <c>$SWITCHBOARD_CONFIG</c>, else <c>$XDG_CONFIG_HOME/switchboard/config.json</c>
    /// (<c>~/.config/switchboard/config.json</c>).
    /// </summary>
    public static string PathFor(string? explicitPath)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            return explicitPath;
        }

        if (Environment.GetEnvironmentVariable("SWITCHBOARD_CONFIG") is { Length: > 0 } fromEnv)
        {
            return fromEnv;
        }

        var root = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        return Path.Combine(root, "switchboard", "config.json");
    }

    public static CliConfig? Load(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), CliJson.Default.CliConfig);
        }
        catch (JsonException ex)
        {
            throw new UsageException($"{path} is not a valid config file ({ex.Message}); run 'switchboard login' again");
        }
    }

    /// <summary>Writes the file readable by its owner only (mode 600): it holds a bearer token.</summary>
    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        // A fresh file every time (never an old one, never through a link left in its place), so the mode below
        // is the one it is created with.
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite; // never readable by others, not even briefly
        }

        using (var stream = new FileStream(temp, options))
        {
            JsonSerializer.Serialize(stream, this, CliJson.Default.CliConfig);
        }

        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        File.Move(temp, path, overwrite: true);
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(CliConfig))]
internal sealed partial class CliJson : JsonSerializerContext;

/// <summary>Exit codes scripts can rely on.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Refused by the server for a reason not listed below (invalid, conflict, too_large, rate_limited…).</summary>
    public const int Refused = 1;
    /// <summary>Wrong arguments.</summary>
    public const int Usage = 2;
    /// <summary>Not logged in, or the token was refused: run <c>switchboard login</c>.</summary>
    public const int Unauthorized = 3;
    /// <summary>Unknown user, group or conversation, or not a member.</summary>
    public const int NotFound = 4;
    /// <summary>The server could not be reached or did not answer in time.</summary>
    public const int Unavailable = 5;
}
