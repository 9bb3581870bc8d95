using Microsoft.Data.Sqlite;
using Switchboard.Client.E2ee;

namespace Switchboard.Client;

/// <summary>
/// A device's end-to-end state (private keys, sessions, sender keys, the text of what it decrypted) in a SQLite
/// file readable by its owner only (mode 600, set when the file is made).
/// </summary>
public sealed class SqliteE2eeStore : IE2eeStore, IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();

    /// <summary>Opens (or creates) the file at <paramref name="path"/>.</summary>
    public SqliteE2eeStore(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path) && !OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            // Made empty with the owner's mode before SQLite opens it (its -wal and -shm files take the same mode).
            using var created = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
        }

        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        _connection.Open();
        using var setup = _connection.CreateCommand();
        setup.CommandText = """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            CREATE TABLE IF NOT EXISTS e2ee (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
            """;
        setup.ExecuteNonQuery();
    }

    /// <inheritdoc />
    public ValueTask<byte[]?> GetAsync(string kind, string key)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT value FROM e2ee WHERE kind = $k AND key = $key";
            command.Parameters.AddWithValue("$k", kind);
            command.Parameters.AddWithValue("$key", key);
            return ValueTask.FromResult(command.ExecuteScalar() as byte[]);
        }
    }

    /// <inheritdoc />
    public ValueTask SetAsync(string kind, string key, byte[] value)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "INSERT INTO e2ee(kind, key, value) VALUES ($k, $key, $v) ON CONFLICT DO UPDATE SET value = excluded.value";
            command.Parameters.AddWithValue("$k", kind);
            command.Parameters.AddWithValue("$key", key);
            command.Parameters.AddWithValue("$v", value);
            command.ExecuteNonQuery();
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DeleteAsync(string kind, string key)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "DELETE FROM e2ee WHERE kind = $k AND key = $key";
            command.Parameters.AddWithValue("$k", kind);
            command.Parameters.AddWithValue("$key", key);
            command.ExecuteNonQuery();
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<string>> KeysAsync(string kind)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT key FROM e2ee WHERE kind = $k ORDER BY key";
            command.Parameters.AddWithValue("$k", kind);
            using var reader = command.ExecuteReader();
            var keys = new List<string>();
            while (reader.Read())
            {
                keys.Add(reader.GetString(0));
            }

            return ValueTask.FromResult<IReadOnlyList<string>>(keys);
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _connection.Dispose();
}
