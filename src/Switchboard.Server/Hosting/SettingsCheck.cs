using System.Collections;
using System.Reflection;
using Switchboard.Server.Abuse;
using Switchboard.Server.Accounts;
using Switchboard.Server.Fanout;
using Switchboard.Server.Gateway;
using Switchboard.Server.Messaging;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Hosting;

/// <summary>
/// Finds keys under <c>Switchboard:</c> that are no setting (a misspelt key is otherwise ignored in silence), each
/// with the closest real key when one is near.
/// </summary>
internal static class SettingsCheck
{
    private static readonly (string Section, Type Options)[] Sections =
    [
        ("Switchboard", typeof(ServerOptions)),
        ("Switchboard:Storage", typeof(StorageOptions)),
        ("Switchboard:Gateway", typeof(GatewayOptions)),
        ("Switchboard:Messaging", typeof(MessagingOptions)),
        ("Switchboard:Accounts", typeof(AccountsOptions)),
        ("Switchboard:Fanout", typeof(FanoutOptions)),
        ("Switchboard:Abuse", typeof(AbuseOptions)),
        ("Switchboard:Cluster", typeof(Cluster.ClusterOptions)),
        ("Switchboard:Web", typeof(Web.WebOptions)),
        ("Switchboard:Push", typeof(Push.PushOptions)),
    ];

    /// <summary>Every key that can be set, as configuration paths; lists end in <c>:*</c>.</summary>
    public static IReadOnlyList<string> KnownKeys()
    {
        var keys = new List<string>();
        foreach (var (section, type) in Sections)
        {
            Collect(section, type, keys);
        }

        return keys;
    }

    /// <summary>One message per key under <c>Switchboard:</c> that is no setting.</summary>
    public static List<string> UnknownKeys(IConfiguration configuration)
    {
        var known = KnownKeys();
        var sections = Sections.Select(s => s.Section).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var messages = new List<string>();
        foreach (var (key, value) in configuration.GetSection("Switchboard").AsEnumerable())
        {
            if (value is null || sections.Contains(key) || known.Any(k => Matches(k, key)))
            {
                continue; // a section, or a setting
            }

            var nearest = known.Where(k => !k.EndsWith(":*", StringComparison.Ordinal))
                .Select(k => (Key: k, Distance: Distance(k.ToUpperInvariant(), key.ToUpperInvariant())))
                .MinBy(k => k.Distance);
            messages.Add(nearest.Distance <= 3
                ? $"'{key}' is not a setting and is ignored; did you mean '{nearest.Key}'?"
                : $"'{key}' is not a setting and is ignored");
        }

        return messages;
    }

    private static bool Matches(string known, string key) =>
        known.EndsWith(":*", StringComparison.Ordinal)
            ? key.StartsWith(known[..^1], StringComparison.OrdinalIgnoreCase)
            : key.Equals(known, StringComparison.OrdinalIgnoreCase);

    private static void Collect(string prefix, Type type, List<string> keys)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var path = $"{prefix}:{property.Name}";
            var propertyType = property.PropertyType;
            if (propertyType != typeof(string) && typeof(IEnumerable).IsAssignableFrom(propertyType))
            {
                keys.Add(path + ":*");
            }
            else if (propertyType.IsClass && propertyType != typeof(string))
            {
                Collect(path, propertyType, keys);
            }
            else if (property.CanWrite)
            {
                keys.Add(path);
            }
        }
    }

    /// <summary>Levenshtein distance, for the suggestion.</summary>
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
