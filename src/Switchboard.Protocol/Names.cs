using System.Text.RegularExpressions;

namespace Switchboard.Protocol;

/// <summary>Rules for user handles and conversation ids.</summary>
public static partial class Names
{
    /// <summary>Prefix of a direct conversation id.</summary>
    public const string DirectPrefix = "dm:";
    /// <summary>Prefix of a group conversation id.</summary>
    public const string GroupPrefix = "grp:";

    [GeneratedRegex("^[a-z0-9][a-z0-9_.-]{2,31}$", RegexOptions.CultureInvariant)]
    private static partial Regex HandleRegex();

    /// <summary>True when <paramref name="handle"/> is a valid user handle.</summary>
    public static bool IsValidHandle(string? handle) => handle is not null && HandleRegex().IsMatch(handle);

    /// <summary>The canonical direct conversation id of two distinct users.</summary>
    public static string DirectConversation(string a, string b) =>
        string.CompareOrdinal(a, b) < 0 ? $"{DirectPrefix}{a}:{b}" : $"{DirectPrefix}{b}:{a}";

    /// <summary>
    /// Parses a direct conversation id. True only when it is canonical: two valid, distinct handles in
    /// ordinal order.
    /// </summary>
    public static bool TryParseDirect(string conv, out string first, out string second)
    {
        first = second = "";
        if (!conv.StartsWith(DirectPrefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = conv.AsSpan(DirectPrefix.Length);
        var colon = rest.IndexOf(':');
        if (colon <= 0 || rest[(colon + 1)..].Contains(':'))
        {
            return false;
        }

        var a = rest[..colon].ToString();
        var b = rest[(colon + 1)..].ToString();
        if (!IsValidHandle(a) || !IsValidHandle(b) || string.CompareOrdinal(a, b) >= 0)
        {
            return false;
        }

        first = a;
        second = b;
        return true;
    }

    /// <summary>True when the id names a group conversation.</summary>
    public static bool IsGroup(string conv) => conv.StartsWith(GroupPrefix, StringComparison.Ordinal);

    /// <summary>True when the id has the shape of a group id the server makes: <c>grp:</c> and 1 to 19 digits.</summary>
    public static bool IsValidGroupId(string conv)
    {
        if (!IsGroup(conv) || conv.Length <= GroupPrefix.Length || conv.Length > GroupPrefix.Length + 19)
        {
            return false;
        }

        foreach (var c in conv.AsSpan(GroupPrefix.Length))
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        return true;
    }
}
