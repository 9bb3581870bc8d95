namespace Switchboard.Protocol;

/// <summary>Rules for user handles and conversation ids.</summary>
public static class Names
{
    /// <summary>Prefix of a direct conversation id.</summary>
    public const string DirectPrefix = "dm:";
    /// <summary>Prefix of a group conversation id.</summary>
    public const string GroupPrefix = "grp:";

    /// <summary>True when <paramref name="handle"/> is a valid user handle: <c>^[a-z0-9][a-z0-9_.-]{2,31}$</c>.</summary>
    /// <remarks>A loop rather than a regex: it runs on every message (twice per direct conversation id).</remarks>
    public static bool IsValidHandle(string? handle) => handle is not null && IsValidHandle(handle.AsSpan());

    private static bool IsValidHandle(ReadOnlySpan<char> handle)
    {
        if (handle.Length is < 3 or > 32 || !IsHandleStart(handle[0]))
        {
            return false;
        }

        foreach (var c in handle[1..])
        {
            if (!IsHandleStart(c) && c is not ('_' or '.' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsHandleStart(char c) => c is (>= 'a' and <= 'z') or (>= '0' and <= '9');

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

        var a = rest[..colon];
        var b = rest[(colon + 1)..];
        if (!IsValidHandle(a) || !IsValidHandle(b) || a.SequenceCompareTo(b) >= 0)
        {
            return false;
        }

        first = a.ToString();
        second = b.ToString();
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
