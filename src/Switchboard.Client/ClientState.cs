using Microsoft.Data.Sqlite;

namespace Switchboard.Client;

/// <summary>A send waiting for its ack: resent with the same cid after every reconnect until acked.</summary>
/// <param name="Cid">The client id of the send.</param>
/// <param name="Frame">The frame as JSON, sent again as is.</param>
/// <param name="Order">Position in the outbox: resends keep the original order.</param>
public sealed record PendingSend(string Cid, string Frame, long Order);

/// <summary>What a client remembers between connections (and, if persistent, between runs).</summary>
public interface IClientStateStore
{
    /// <summary>The last seq delivered to the application in <paramref name="conv"/>, or null if none yet.</summary>
    ValueTask<long?> GetLastSeqAsync(string conv);

    /// <summary>Records the last seq delivered to the application.</summary>
    ValueTask SetLastSeqAsync(string conv, long seq);

    /// <summary>Every unacked send, in order.</summary>
    ValueTask<IReadOnlyList<PendingSend>> LoadOutboxAsync();

    /// <summary>Adds a send to the outbox.</summary>
    ValueTask AddPendingAsync(PendingSend send);

    /// <summary>Removes an acked (or refused) send.</summary>
    ValueTask RemovePendingAsync(string cid);
}

/// <summary>The default state: in memory, gone with the process.</summary>
public sealed class InMemoryClientStateStore : IClientStateStore
{
    private readonly Dictionary<string, long> _lastSeq = new(StringComparer.Ordinal);
    private readonly SortedDictionary<long, PendingSend> _outbox = [];
    private readonly Dictionary<string, long> _orderOf = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <inheritdoc />
    public ValueTask<long?> GetLastSeqAsync(string conv)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(_lastSeq.TryGetValue(conv, out var seq) ? seq : (long?)null);
        }
    }

    /// <inheritdoc />
    public ValueTask SetLastSeqAsync(string conv, long seq)
    {
        lock (_lock)
        {
            _lastSeq[conv] = seq;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<PendingSend>> LoadOutboxAsync()
    {
        lock (_lock)
        {
            return ValueTask.FromResult<IReadOnlyList<PendingSend>>([.. _outbox.Values]);
        }
    }

    /// <inheritdoc />
    public ValueTask AddPendingAsync(PendingSend send)
    {
        lock (_lock)
        {
            _outbox[send.Order] = send;
            _orderOf[send.Cid] = send.Order;
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask RemovePendingAsync(string cid)
    {
        lock (_lock)
        {
            if (_orderOf.Remove(cid, out var order))
            {
                _outbox.Remove(order);
            }
        }

        return ValueTask.CompletedTask;
    }
}

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
