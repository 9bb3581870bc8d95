using System.IO.Hashing;
using System.Text;
using Npgsql;

namespace Switchboard.Server.Storage.Postgres;

/// <summary>
/// The PostgreSQL shards of a cluster, one Npgsql pool each. Every shard has the same tables (<see cref="Schema"/>);
/// what lives where is decided here alone: a conversation's rows (events, members, cursors) on
/// <see cref="ForConversation"/>, a user's account rows on <see cref="ForUser"/>. The hash is XxHash3 of the
/// UTF-8 name, stable across processes and versions, taken modulo the number of shards.
/// </summary>
internal sealed class PgShards : IAsyncDisposable
{
    private readonly NpgsqlDataSource[] _sources;

    public PgShards(IReadOnlyList<string> connectionStrings, int maxConnections)
    {
        _sources = new NpgsqlDataSource[connectionStrings.Count];
        for (var i = 0; i < _sources.Length; i++)
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionStrings[i])
            {
                MaxPoolSize = maxConnections,
                // A shard that is down answers fast, so a send to it is refused in a few seconds rather than hanging.
                Timeout = Math.Min(new NpgsqlConnectionStringBuilder(connectionStrings[i]).Timeout, 5),
                NoResetOnClose = true,
                ApplicationName = "switchboard",
                // The same few statements run thousands of times a second: each connection prepares them once
                // (parsed and planned once, not per call).
                MaxAutoPrepare = 64,
                AutoPrepareMinUsages = 2,
            };
            _sources[i] = NpgsqlDataSource.Create(builder.ConnectionString);
        }
    }

    public int Count => _sources.Length;

    private volatile bool _prepared;

    public NpgsqlDataSource this[int shard] => _sources[shard];

    public int ForConversation(string conv) => IndexOf(conv);

    public int ForUser(string user) => IndexOf(user);

    private int IndexOf(string key)
    {
        if (_sources.Length == 1)
        {
            return 0;
        }

        Span<byte> buffer = stackalloc byte[256];
        var bytes = Encoding.UTF8.GetByteCount(key) <= buffer.Length ? buffer[..Encoding.UTF8.GetBytes(key, buffer)] : Encoding.UTF8.GetBytes(key);
        return (int)(XxHash3.HashToUInt64(bytes) % (ulong)_sources.Length);
    }

    /// <summary>
    /// Makes the tables on every shard, checks each shard is where the map says (its recorded place and count) and
    /// commits synchronously. Throws, naming the shard, when one cannot be reached or disagrees.
    /// </summary>
    public async Task PrepareAsync(CancellationToken cancellationToken)
    {
        if (_prepared)
        {
            return; // the launcher checked them before anything listened; the node's start asks again
        }

        for (var i = 0; i < _sources.Length; i++)
        {
            try
            {
                await using var connection = await _sources[i].OpenConnectionAsync(cancellationToken);
                await using (var sync = new NpgsqlCommand("SHOW synchronous_commit", connection))
                {
                    var value = (string?)await sync.ExecuteScalarAsync(cancellationToken);
                    if (value is "off" or "local")
                    {
                        throw new InvalidOperationException($"synchronous_commit is '{value}': an acked message could be lost with the shard; set it to 'on'.");
                    }
                }

                await using (var schema = new NpgsqlCommand(Schema, connection))
                {
                    await schema.ExecuteNonQueryAsync(cancellationToken);
                }

                await using var place = new NpgsqlCommand(
                    "INSERT INTO sb_meta (key, value) VALUES ('shard', @place) ON CONFLICT (key) DO NOTHING; SELECT value FROM sb_meta WHERE key = 'shard'", connection);
                place.Parameters.AddWithValue("place", $"{i + 1} of {_sources.Length}");
                var recorded = (string?)await place.ExecuteScalarAsync(cancellationToken);
                if (recorded != $"{i + 1} of {_sources.Length}")
                {
                    throw new InvalidOperationException($"it holds shard {recorded}, but the shard map has it as shard {i + 1} of {_sources.Length}; the map must list the shards in the same order on every node.");
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
            {
                throw new ShardUnavailableException(i, $"PostgreSQL shard {i + 1} ({Describe(i)}): {ex.Message}", ex)
                {
                    // Not reachable now may pass (a supervisor starts the node again); a wrong map or setting will not.
                    Unreachable = ex is not InvalidOperationException and not PostgresException,
                };
            }
        }

        _prepared = true;
    }

    /// <summary>Host and port of a shard, for messages (never its password).</summary>
    public string Describe(int shard)
    {
        var builder = new NpgsqlConnectionStringBuilder(_sources[shard].ConnectionString);
        return $"{builder.Host}:{builder.Port}/{builder.Database}";
    }

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var source in _sources)
        {
            await source.DisposeAsync();
        }
    }

    /// <summary>
    /// Every shard's tables. Events are partitioned by day of their time, so retention drops whole partitions
    /// (<see cref="PgMessageStore.PurgeAsync"/>); a partition is made when the first event of its day is written.
    /// Appends to a conversation are serialised by its row in <c>conversations</c> (<c>sb_append_heads</c>).
    /// </summary>
    internal const string Schema = """
        SELECT pg_advisory_xact_lock(7401001); -- nodes starting together make the tables one at a time
        CREATE TABLE IF NOT EXISTS sb_meta (key text PRIMARY KEY, value text NOT NULL);

        CREATE TABLE IF NOT EXISTS conversations (conv text PRIMARY KEY, last_seq bigint NOT NULL);
        CREATE TABLE IF NOT EXISTS events (
            conv text NOT NULL, seq bigint NOT NULL, id bigint NOT NULL, ts bigint NOT NULL,
            sender text NOT NULL, dev int NOT NULL, kind text NOT NULL, cid text NOT NULL,
            body text, e2ee text, reply_to bigint, target bigint, system text,
            PRIMARY KEY (conv, seq, ts)
        ) PARTITION BY RANGE (ts);
        CREATE INDEX IF NOT EXISTS events_by_cid ON events (sender, cid);
        CREATE INDEX IF NOT EXISTS events_deleted ON events (conv, target) WHERE kind = 'delete';
        CREATE TABLE IF NOT EXISTS groups (conv text PRIMARY KEY, name text NOT NULL, created bigint NOT NULL);
        CREATE TABLE IF NOT EXISTS members (
            conv text NOT NULL, usr text NOT NULL, role text NOT NULL, joined_seq bigint NOT NULL, removed_seq bigint, joined_ts bigint NOT NULL,
            PRIMARY KEY (conv, usr));
        CREATE INDEX IF NOT EXISTS members_by_user ON members (usr);
        CREATE TABLE IF NOT EXISTS device_cursors (usr text NOT NULL, device int NOT NULL, conv text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (usr, device, conv));
        CREATE TABLE IF NOT EXISTS member_cursors (conv text NOT NULL, usr text NOT NULL, delivered bigint NOT NULL, read bigint NOT NULL, updated bigint NOT NULL, PRIMARY KEY (conv, usr));

        CREATE TABLE IF NOT EXISTS users (usr text PRIMARY KEY, hash bytea NOT NULL, salt bytea NOT NULL, parameters text NOT NULL, created bigint NOT NULL,
            last_seen bigint, privacy smallint NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS devices (usr text NOT NULL, device int NOT NULL, name text NOT NULL, token_hash bytea, created bigint NOT NULL,
            last_active bigint NOT NULL, revoked boolean NOT NULL DEFAULT false, push text, keys text, PRIMARY KEY (usr, device));
        CREATE UNIQUE INDEX IF NOT EXISTS devices_by_token ON devices (token_hash) WHERE token_hash IS NOT NULL;
        CREATE TABLE IF NOT EXISTS one_time_keys (usr text NOT NULL, device int NOT NULL, id int NOT NULL, key text NOT NULL, PRIMARY KEY (usr, device, id));
        CREATE TABLE IF NOT EXISTS invites (usr text NOT NULL, conv text NOT NULL, sender text NOT NULL, ts bigint NOT NULL, expires bigint NOT NULL, PRIMARY KEY (usr, conv));
        CREATE TABLE IF NOT EXISTS mutes (usr text NOT NULL, conv text NOT NULL, until bigint NOT NULL, PRIMARY KEY (usr, conv));

        -- Moves the heads of the conversations a batch appends to (names in the same order on every node, so two
        -- nodes never deadlock): each is locked (made at 0 when new) and checked to be the seq the batch was
        -- decided on; if any moved, the batch is refused naming them (SB001) and nothing changes. One index probe
        -- per conversation: never a scan of the table.
        DROP FUNCTION IF EXISTS sb_append_heads(text[], bigint[]);
        CREATE OR REPLACE FUNCTION sb_append_heads(names text[], expected bigint[], lasts bigint[]) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            moved text := NULL;
            current bigint;
        BEGIN
            FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
                INSERT INTO conversations (conv, last_seq) VALUES (names[i], 0) ON CONFLICT (conv) DO NOTHING;
                SELECT last_seq INTO current FROM conversations WHERE conv = names[i] FOR UPDATE;
                IF current <> expected[i] THEN
                    moved := concat_ws(' ', moved, names[i]);
                END IF;
            END LOOP;
            IF moved IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = moved;
            END IF;
            FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
                UPDATE conversations SET last_seq = lasts[i] WHERE conv = names[i];
            END LOOP;
        END $$;
        """;
}

/// <summary>A shard could not be reached or is not the one the map names.</summary>
internal sealed class ShardUnavailableException(int shard, string message, Exception? inner = null) : Exception(message, inner)
{
    public int Shard { get; } = shard;

    /// <summary>The shard did not answer (as opposed to answering wrongly).</summary>
    public bool Unreachable { get; init; }
}
