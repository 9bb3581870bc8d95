namespace Switchboard.Client.E2ee;

/// <summary>
/// Where a device keeps its end-to-end state: its private keys, sessions, sender keys, the identities it has seen and
/// the text of the messages it decrypted (a message key is used once: history from the server cannot be read again).
/// Values are opaque bytes; kinds and keys are the SDK's. Keep it as private as the device's token.
/// </summary>
public interface IE2eeStore
{
    /// <summary>The value stored under (<paramref name="kind"/>, <paramref name="key"/>), or null.</summary>
    ValueTask<byte[]?> GetAsync(string kind, string key);

    /// <summary>Stores (or replaces) a value.</summary>
    ValueTask SetAsync(string kind, string key, byte[] value);

    /// <summary>Removes a value, if there is one.</summary>
    ValueTask DeleteAsync(string kind, string key);

    /// <summary>Every key of a kind.</summary>
    ValueTask<IReadOnlyList<string>> KeysAsync(string kind);
}

/// <summary>End-to-end state in memory, gone with the process (tests, short-lived tools).</summary>
public sealed class InMemoryE2eeStore : IE2eeStore
{
    private readonly Dictionary<(string, string), byte[]> _values = [];
    private readonly Lock _lock = new();

    /// <inheritdoc />
    public ValueTask<byte[]?> GetAsync(string kind, string key)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(_values.TryGetValue((kind, key), out var value) ? value : null);
        }
    }

    /// <inheritdoc />
    public ValueTask SetAsync(string kind, string key, byte[] value)
    {
        lock (_lock)
        {
            _values[(kind, key)] = value;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DeleteAsync(string kind, string key)
    {
        lock (_lock)
        {
            _values.Remove((kind, key));
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<string>> KeysAsync(string kind)
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<string>>([.. _values.Keys.Where(k => k.Item1 == kind).Select(k => k.Item2)]);
        }
    }
}

/// <summary>Codes of <see cref="SwitchboardException"/> the SDK raises itself for end-to-end encryption.</summary>
public static class E2eeErrorCodes
{
    /// <summary>A device to encrypt for has published no keys: the message cannot be sent encrypted.</summary>
    public const string NoKeys = "no_keys";

    /// <summary>No session with the user's devices yet (safety numbers need one).</summary>
    public const string NoSession = "no_session";
}
