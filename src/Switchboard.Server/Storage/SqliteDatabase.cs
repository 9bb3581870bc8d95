using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Storage;

/// <summary>
/// The embedded database file: one SQLite database in WAL mode under the data directory. Readers open pooled
/// connections; the group-commit writer keeps one of its own.
/// </summary>
internal sealed class SqliteDatabase : IDisposable
{
    private readonly string _connectionString;

    public SqliteDatabase(IOptions<ServerOptions> options, IOptions<StorageOptions>? storage = null)
    {
        _lockTimeoutMs = (storage?.Value ?? new StorageOptions()).LockTimeoutSeconds * 1000;
        var dir = Path.GetFullPath(options.Value.DataDir);
        Directory.CreateDirectory(dir);
        FilePath = Path.Combine(dir, "switchboard.db");
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = FilePath,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = _lockTimeoutMs / 1000, // seconds a command waits on a locked database before it fails
        }.ToString();
        Migrate();
        Reads = new ReadSessions(this, keep: Math.Max(8, 4 * Environment.ProcessorCount));
    }

    /// <summary>Open connections with prepared statements, for the hot reads (connects, replay, receipts).</summary>
    public ReadSessions Reads { get; }

    public void Dispose() => Reads.Dispose();

    public string FilePath { get; }

    private static readonly object Marker = new();
    private readonly int _lockTimeoutMs;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<SQLitePCL.sqlite3, object> _initialised = new();

    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        // Pragmas belong to the physical connection, which the pool keeps: set them once per handle, not on
        // every Open (they were three statements per read on hot paths such as connects).
        if (!_initialised.TryGetValue(connection.Handle!, out _))
        {
            // FULL: in WAL mode every commit is fsync'd, which is what "durable before ack" means.
            // busy_timeout: a connection that finds the database locked waits inside SQLite (fine-grained)
            // rather than failing or sleeping in coarse steps, so side writes never stall the group commit long.
            Execute(connection, $"PRAGMA synchronous=FULL; PRAGMA busy_timeout={_lockTimeoutMs};");
            _initialised.AddOrUpdate(connection.Handle!, Marker);
        }

        return connection;
    }

    public static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private void Migrate()
    {
        using var connection = Open();
        Execute(connection, "PRAGMA journal_mode=WAL;");
        using (var version = connection.CreateCommand())
        {
            version.CommandText = "PRAGMA user_version";
            var found = Convert.ToInt64(version.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
            if (found > SchemaVersion)
            {
                throw new InvalidOperationException($"{FilePath} was written by a newer Switchboard (schema {found}, this one knows {SchemaVersion}).");
            }
        }

        Execute(connection, Schema);
        // Schema changes from here on are ALTERs keyed on user_version, so existing data directories upgrade.
        Execute(connection, $"PRAGMA user_version = {SchemaVersion};");
    }

    private const int SchemaVersion = 1;

    // Events are keyed by (conv, seq): "latest 50" and "after seq" are range reads on the primary key.
    // Cursors are cumulative rows per (device, conv) and (conv, member), never one row per message per member.
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS users (
            user      TEXT PRIMARY KEY,
            pw_hash   BLOB NOT NULL,
            pw_salt   BLOB NOT NULL,
            pw_params TEXT NOT NULL,
            created   INTEGER NOT NULL,
            last_seen INTEGER
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS devices (
            user        TEXT NOT NULL,
            device      INTEGER NOT NULL,
            name        TEXT NOT NULL,
            token_hash  BLOB,
            created     INTEGER NOT NULL,
            last_active INTEGER NOT NULL,
            revoked     INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user, device)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX IF NOT EXISTS devices_token ON devices(token_hash) WHERE token_hash IS NOT NULL;

        CREATE TABLE IF NOT EXISTS conversations (
            conv     TEXT PRIMARY KEY,
            kind     TEXT NOT NULL,
            name     TEXT,
            last_seq INTEGER NOT NULL,
            created  INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS members (
            conv        TEXT NOT NULL,
            user        TEXT NOT NULL,
            role        TEXT NOT NULL,
            joined_seq  INTEGER NOT NULL,
            removed_seq INTEGER,
            joined_ts   INTEGER NOT NULL,
            PRIMARY KEY (conv, user)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS members_user ON members(user, conv);

        CREATE TABLE IF NOT EXISTS events (
            conv     TEXT NOT NULL,
            seq      INTEGER NOT NULL,
            id       INTEGER NOT NULL,
            ts       INTEGER NOT NULL,
            sender   TEXT NOT NULL,
            dev      INTEGER NOT NULL,
            kind     TEXT NOT NULL,
            cid      TEXT NOT NULL,
            body     TEXT,
            e2ee     TEXT,
            reply_to INTEGER,
            target   INTEGER,
            system   TEXT,
            PRIMARY KEY (conv, seq)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX IF NOT EXISTS events_cid ON events(sender, cid);
        CREATE INDEX IF NOT EXISTS events_target ON events(conv, target) WHERE target IS NOT NULL;
        CREATE INDEX IF NOT EXISTS events_ts ON events(ts);

        CREATE TABLE IF NOT EXISTS device_cursors (
            user      TEXT NOT NULL,
            device    INTEGER NOT NULL,
            conv      TEXT NOT NULL,
            delivered INTEGER NOT NULL,
            PRIMARY KEY (user, device, conv)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS member_cursors (
            conv      TEXT NOT NULL,
            user      TEXT NOT NULL,
            delivered INTEGER NOT NULL,
            read      INTEGER NOT NULL,
            updated   INTEGER NOT NULL,
            PRIMARY KEY (conv, user)
        ) WITHOUT ROWID;
        """;
}
