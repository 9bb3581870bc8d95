using Microsoft.Data.Sqlite;

namespace Switchboard.Client;

/// <summary>
/// State in a SQLite file: cursors and the outbox survive a restart, so the client resumes where it was and
/// resends, with the same cids, whatever was never acked.
/// </summary>
public sealed class SqliteClientStateStore : IClientStateStore, IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();

    /// <summary>Opens (or creates) the state file at <paramref name="path"/>.</summary>
    public SqliteClientStateStore(string path)
    {
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        _connection.Open();
        Execute("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS cursors (conv TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS outbox (ord INTEGER PRIMARY KEY, cid TEXT NOT NULL UNIQUE, frame TEXT NOT NULL);
            """);
    }

    /// <inheritdoc />
    public ValueTask<long?> GetLastSeqAsync(string conv)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT seq FROM cursors WHERE conv = $c";
            command.Parameters.AddWithValue("$c", conv);
            return ValueTask.FromResult(command.ExecuteScalar() is long seq ? seq : (long?)null);
        }
    }

    /// <inheritdoc />
    public ValueTask SetLastSeqAsync(string conv, long seq)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "INSERT INTO cursors(conv, seq) VALUES ($c, $s) ON CONFLICT DO UPDATE SET seq = excluded.seq";
            command.Parameters.AddWithValue("$c", conv);
            command.Parameters.AddWithValue("$s", seq);
            command.ExecuteNonQuery();
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<PendingSend>> LoadOutboxAsync()
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT cid, frame, ord FROM outbox ORDER BY ord";
            using var reader = command.ExecuteReader();
            var list = new List<PendingSend>();
            while (reader.Read())
            {
                list.Add(new PendingSend(reader.GetString(0), reader.GetString(1), reader.GetInt64(2)));
            }

            return ValueTask.FromResult<IReadOnlyList<PendingSend>>(list);
        }
    }

    /// <inheritdoc />
    public ValueTask AddPendingAsync(PendingSend send)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "INSERT OR IGNORE INTO outbox(ord, cid, frame) VALUES ($o, $c, $f)";
            command.Parameters.AddWithValue("$o", send.Order);
            command.Parameters.AddWithValue("$c", send.Cid);
            command.Parameters.AddWithValue("$f", send.Frame);
            command.ExecuteNonQuery();
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask RemovePendingAsync(string cid)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "DELETE FROM outbox WHERE cid = $c";
            command.Parameters.AddWithValue("$c", cid);
            command.ExecuteNonQuery();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _connection.Dispose();

    private void Execute(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
