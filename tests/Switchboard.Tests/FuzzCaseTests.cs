using Switchboard.Fuzz;

namespace Switchboard.Tests;

/// <summary>
/// Every input kept under <c>fuzz/cases</c> (crashes <c>ci/fuzz.sh</c> found, and the findings of the security
/// pass) and every seed, run through its fuzzing target: none may throw.
/// </summary>
public sealed class FuzzCaseTests
{
    private static string Root()
    {
        var dir = AppContext.BaseDirectory;
        while (!Directory.Exists(Path.Combine(dir, "fuzz", "cases")))
        {
            dir = Path.GetDirectoryName(dir) ?? throw new DirectoryNotFoundException("fuzz/cases above the test binaries");
        }

        return Path.Combine(dir, "fuzz");
    }

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var kind in new[] { "cases", "seeds" })
        {
            foreach (var target in Targets.All.Keys)
            {
                var dir = Path.Combine(Root(), kind, target);
                foreach (var file in Directory.Exists(dir) ? Directory.GetFiles(dir) : [])
                {
                    data.Add(target, Path.GetRelativePath(Root(), file));
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_kept_input_goes_through_its_parser_without_an_exception(string target, string file) =>
        Targets.All[target](File.ReadAllBytes(Path.Combine(Root(), file)));

    [Fact]
    public void The_findings_of_the_security_pass_are_kept_as_cases() =>
        Assert.True(Cases().Count(row => ((string)row[1]).StartsWith("cases", StringComparison.Ordinal)) >= 6);
}
