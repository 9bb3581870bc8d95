using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Switchboard.Protocol;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Storage;

/// <summary>
/// The embedded message store. One writer thread drains a bounded queue: it takes every waiting command (up to
/// <see cref="StorageOptions.MaxBatch"/>), checks and sequences them inside one transaction, commits with one
/// fsync, and only then hands the batch to the observer, which acks and delivers. Being the only writer, it is
/// also the sequencer: per-conversation seqs come from its in-memory counters, in queue order.
/// </summary>
internal sealed partial class SqliteMessageStore : IMessageStore, IDisposable
{
    private readonly SqliteDatabase _database;
    private readonly StorageOptions _options;
    private readonly Messaging.MessagingOptions _messaging;
    private readonly Channel<StoreCommand> _queue;
    private readonly IdGenerator _ids;
    private readonly TimeProvider _time;
    private readonly SwitchboardMetrics _metrics;
    private readonly ILogger<SqliteMessageStore> _logger;
    private readonly Thread _writer;
    private readonly GroupDirectory _groups;
    private ICommitObserver? _observer;

    public SqliteMessageStore(
        SqliteDatabase database,
        GroupDirectory groups,
        IOptions<StorageOptions> options,
        IOptions<Messaging.MessagingOptions> messaging,
        IdGenerator ids,
        TimeProvider time,
        SwitchboardMetrics metrics,
        ILogger<SqliteMessageStore> logger)
    {
        _database = database;
        _groups = groups;
        _options = options.Value;
        _messaging = messaging.Value;
        _ids = ids;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<StoreCommand>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "switchboard-group-commit" };
    }

    /// <summary>Sets who hears of committed batches and starts the writer.</summary>
    public void Start(ICommitObserver observer)
    {
        _observer = observer;
        _writer.Start();
    }

    public ValueTask SubmitAsync(StoreCommand command, CancellationToken cancellationToken) =>
        _queue.Writer.WriteAsync(command, cancellationToken);

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        if (_writer.IsAlive)
        {
            _writer.Join(TimeSpan.FromSeconds(10));
        }
    }

    public AccessResult ResolveAccess(string conv, string user)
    {
        using var connection = _database.Open();
        return ConversationAccess.Resolve(connection, null, conv, user);
    }

    public List<MsgFrame> ReadAfter(string conv, long after, long upTo, int limit)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command($"SELECT {EventColumns} FROM events WHERE conv = $c AND seq > $a AND seq <= $u ORDER BY seq LIMIT $l");
        command.Parameters.AddWithValue("$c", conv);
        command.Parameters.AddWithValue("$a", after);
        command.Parameters.AddWithValue("$u", upTo);
        command.Parameters.AddWithValue("$l", limit);
        return ReadEvents(command, FrameTypes.Msg);
    }

    public List<MsgFrame> ReadBefore(string conv, long before, long minSeq, long minTs, int limit)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command($"SELECT {EventColumns} FROM events WHERE conv = $c AND seq < $b AND seq >= $m AND ts >= $t ORDER BY seq DESC LIMIT $l");
        command.Parameters.AddWithValue("$c", conv);
        command.Parameters.AddWithValue("$b", before);
        command.Parameters.AddWithValue("$m", minSeq);
        command.Parameters.AddWithValue("$t", minTs);
        command.Parameters.AddWithValue("$l", limit);
        return ReadEvents(command, null);
    }

    public List<Membership> GetMemberships(string user)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command("""
            SELECT m.conv, c.kind, m.role, m.joined_seq, m.removed_seq, c.last_seq
            FROM members m JOIN conversations c ON c.conv = m.conv
            WHERE m.user = $u
            """);
        command.Parameters.AddWithValue("$u", user);
        using var reader = command.ExecuteReader();
        var list = new List<Membership>();
        while (reader.Read())
        {
            list.Add(new Membership(
                reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3),
                reader.IsDBNull(4) ? null : reader.GetInt64(4), reader.GetInt64(5)));
        }

        return list;
    }

    public List<string> CurrentMembers(string conv)
    {
        // A direct conversation's members are in its id; a group's are in the membership cache. Neither needs a read.
        if (Names.TryParseDirect(conv, out var a, out var b))
        {
            return [a, b];
        }

        return _groups.Get(conv) is { } group ? [.. group.Users] : [];
    }

    public long? NextOwnMessage(string conv, string author, long after)
    {
        using var connection = _database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT MIN(seq) FROM events WHERE conv = $c AND seq > $a AND sender = $s AND kind IN ('text', 'media')";
        command.Parameters.AddWithValue("$c", conv);
        command.Parameters.AddWithValue("$a", after);
        command.Parameters.AddWithValue("$s", author);
        return command.ExecuteScalar() is long seq ? seq : null;
    }

    public bool SharesConversation(string a, string b)
    {
        if (a == b)
        {
            return true;
        }

        using var connection = _database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT EXISTS (SELECT 1 FROM conversations WHERE conv = $dm)
                OR EXISTS (SELECT 1 FROM members x JOIN members y ON y.conv = x.conv
                           WHERE x.user = $a AND y.user = $b AND x.removed_seq IS NULL AND y.removed_seq IS NULL
                             AND x.conv LIKE 'grp:%')
            """;
        command.Parameters.AddWithValue("$dm", Names.DirectConversation(a, b));
        command.Parameters.AddWithValue("$a", a);
        command.Parameters.AddWithValue("$b", b);
        return (long)command.ExecuteScalar()! != 0;
    }

    public Dictionary<string, long> GetDeviceCursors(string user, int device)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command("SELECT conv, delivered FROM device_cursors WHERE user = $u AND device = $d");
        command.Parameters.AddWithValue("$u", user);
        command.Parameters.AddWithValue("$d", device);
        using var reader = command.ExecuteReader();
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        while (reader.Read())
        {
            map[reader.GetString(0)] = reader.GetInt64(1);
        }

        return map;
    }

    public List<MemberCursor> GetMemberCursors(string conv)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command("SELECT user, delivered, read, updated FROM member_cursors WHERE conv = $c");
        command.Parameters.AddWithValue("$c", conv);
        using var reader = command.ExecuteReader();
        var list = new List<MemberCursor>();
        while (reader.Read())
        {
            list.Add(new MemberCursor(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3)));
        }

        return list;
    }

    public long CountUnread(string conv, string user, long after, long upTo)
    {
        using var session = _database.Reads.Rent();
        var command = session.Command("SELECT COUNT(*) FROM events WHERE conv = $c AND seq > $a AND seq <= $u AND kind IN ('text', 'media') AND sender <> $s");
        command.Parameters.AddWithValue("$c", conv);
        command.Parameters.AddWithValue("$a", after);
        command.Parameters.AddWithValue("$u", upTo);
        command.Parameters.AddWithValue("$s", user);
        return (long)command.ExecuteScalar()!;
    }

    public int Purge(long olderThanTs, int maxRows)
    {
        using var connection = _database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM events WHERE (conv, seq) IN (SELECT conv, seq FROM events WHERE ts < $t LIMIT $l)";
        command.Parameters.AddWithValue("$t", olderThanTs);
        command.Parameters.AddWithValue("$l", maxRows);
        return command.ExecuteNonQuery();
    }

    private const string EventColumns = "conv, seq, id, ts, sender, dev, kind, cid, body, e2ee, reply_to, target, system";

    private static List<MsgFrame> ReadEvents(SqliteCommand command, string? frameType)
    {
        using var reader = command.ExecuteReader();
        var list = new List<MsgFrame>();
        while (reader.Read())
        {
            list.Add(new MsgFrame
            {
                T = frameType,
                Conv = reader.GetString(0),
                Seq = reader.GetInt64(1),
                Id = reader.GetInt64(2).ToString(System.Globalization.CultureInfo.InvariantCulture),
                Ts = reader.GetInt64(3),
                From = reader.GetString(4),
                Dev = reader.GetInt32(5),
                Kind = reader.GetString(6),
                Cid = reader.GetString(7),
                Body = reader.IsDBNull(8) ? null : reader.GetString(8),
                E2ee = reader.IsDBNull(9) ? null : ParseJson(reader.GetString(9)),
                ReplyTo = reader.IsDBNull(10) ? null : reader.GetInt64(10),
                Target = reader.IsDBNull(11) ? null : reader.GetInt64(11),
                System = reader.IsDBNull(12) ? null : JsonSerializer.Deserialize(reader.GetString(12), SwitchboardJsonContext.Default.SystemInfo),
            });
        }

        return list;
    }

    private static JsonElement ParseJson(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }
}
