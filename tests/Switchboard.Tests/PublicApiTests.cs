using System.Reflection;

namespace Switchboard.Tests;

/// <summary>
/// The SDK's public surface is what an app uses, and changes to it are deliberate: the public types and members of
/// Switchboard.Client and Switchboard.Protocol are compared with the approved lists under <c>PublicApi/</c>. After
/// a deliberate change, run the tests with <c>SWITCHBOARD_APPROVE_API=1</c> to write the new lists, and review them.
/// </summary>
public sealed class PublicApiTests
{
    public static TheoryData<string> Assemblies() => ["Switchboard.Client", "Switchboard.Protocol", "Switchboard.Client.Sqlite"];

    private static string SourceDir([System.Runtime.CompilerServices.CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void The_public_surface_is_the_approved_one(string name)
    {
        var assembly = Assembly.Load(name);
        var lines = new List<string>();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            lines.Add($"{Kind(type)} {type.FullName}");
            lines.AddRange(type.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly)
                .Where(m => m is not MethodInfo { IsSpecialName: true } && m.Name is not ("EqualityContract" or "<Clone>$")) // accessors, record plumbing
                .Select(m => $"  {m.MemberType} {m}")
                .Distinct()
                .Order(StringComparer.Ordinal));
        }

        var actual = string.Join('\n', lines) + "\n";
        var file = Path.Combine(SourceDir(), "PublicApi", name + ".txt");
        if (Environment.GetEnvironmentVariable("SWITCHBOARD_APPROVE_API") == "1")
        {
            File.WriteAllText(file, actual);
        }

        var approved = File.Exists(file) ? File.ReadAllText(file) : "";
        var added = actual.Split('\n').Except(approved.Split('\n')).ToList();
        var removed = approved.Split('\n').Except(actual.Split('\n')).ToList();
        Assert.True(added.Count == 0 && removed.Count == 0,
            $"public API of {name} changed.\nadded:\n{string.Join('\n', added)}\nremoved:\n{string.Join('\n', removed)}");
    }

    private static string Kind(Type type) =>
        type.IsInterface ? "interface" : type.IsEnum ? "enum" : type.IsValueType ? "struct" : type.IsAbstract && type.IsSealed ? "static class" : "class";

    [Fact]
    public async Task The_sdk_packs_with_its_readme_docs_symbols_and_the_protocol_as_a_dependency()
    {
        var root = SourceDir();
        while (!File.Exists(Path.Combine(root, "Switchboard.slnx")))
        {
            root = Path.GetDirectoryName(root)!;
        }

        var output = Path.Combine(Path.GetTempPath(), "switchboard-pack-" + Guid.NewGuid().ToString("N"));
        var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name; // built already by the test run
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = root };
        foreach (var arg in new[] { "pack", "src/Switchboard.Client/Switchboard.Client.csproj", "--no-build", "-c", configuration, "-o", output })
        {
            info.ArgumentList.Add(arg);
        }

        using (var pack = System.Diagnostics.Process.Start(info)!)
        {
            var log = pack.StandardOutput.ReadToEndAsync();
            await pack.WaitForExitAsync();
            Assert.True(pack.ExitCode == 0, await log);
        }

        try
        {
            using var package = System.IO.Compression.ZipFile.OpenRead(Path.Combine(output, "Switchboard.Client.1.0.0.nupkg"));
            var entries = package.Entries.Select(e => e.FullName).ToList();
            Assert.Contains("README.md", entries);
            Assert.Contains("lib/net10.0/Switchboard.Client.dll", entries);
            Assert.Contains("lib/net10.0/Switchboard.Client.xml", entries);
            using var nuspec = new StreamReader(package.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open());
            var text = await nuspec.ReadToEndAsync();
            Assert.Contains("<dependency id=\"Switchboard.Protocol\"", text);
            Assert.DoesNotContain("Microsoft.Data.Sqlite", text); // the file-backed state is a package of its own
            Assert.True(File.Exists(Path.Combine(output, "Switchboard.Client.1.0.0.snupkg")));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
