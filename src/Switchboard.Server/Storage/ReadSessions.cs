using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;

namespace Switchboard.Server.Storage;

/// <summary>
/// Open read connections that keep their prepared statements. Microsoft.Data.Sqlite prepares a statement anew for
/// every command (parsing and planning the SQL each time; it showed as a fifth of the server's CPU while thousands
/// of devices reconnected), and a pooled connection drops its statements when closed. A session stays open in
/// this pool and keeps one prepared command per SQL text, so a hot read binds and steps, nothing more.
/// </summary>
internal sealed class ReadSessions(SqliteDatabase database, int keep) : IDisposable
{
    private readonly ConcurrentBag<ReadSession> _idle = [];
    private int _idleCount;
    private bool _disposed;

    /// <summary>A session for this thread's use until disposed; dispose it before another is taken on the same thread.</summary>
    public ReadSession Rent()
    {
        if (_idle.TryTake(out var session))
        {
            Interlocked.Decrement(ref _idleCount);
            return session;
        }

        return new ReadSession(this, database.Open());
    }

    internal void Return(ReadSession session)
    {
        if (!Volatile.Read(ref _disposed) && Interlocked.Increment(ref _idleCount) <= keep)
        {
            _idle.Add(session);
            return;
        }

        Interlocked.Decrement(ref _idleCount);
        session.Close();
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        while (_idle.TryTake(out var session))
        {
            session.Close();
        }
    }
}

/// <summary>One open connection and its prepared commands; one user at a time.</summary>
internal sealed class ReadSession(ReadSessions owner, SqliteConnection connection) : IDisposable
{
    private readonly Dictionary<string, SqliteCommand> _commands = new(StringComparer.Ordinal);

    /// <summary>The command for <paramref name="sql"/>, prepared once per session, with its parameters cleared.</summary>
    public SqliteCommand Command(string sql)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = connection.CreateCommand();
            command.CommandText = sql;
            command.Prepare();
            _commands[sql] = command;
        }

        command.Parameters.Clear();
        return command;
    }

    /// <summary>Back to the pool (readers of its commands must be disposed by now).</summary>
    public void Dispose() => owner.Return(this);

    internal void Close()
    {
        foreach (var command in _commands.Values)
        {
            command.Dispose();
        }

        connection.Dispose();
    }
}
