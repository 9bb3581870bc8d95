namespace Switchboard.Server.Storage;

/// <summary>
/// The version of the store's layout (<see cref="RocksKeys"/>, <see cref="RecordCodec"/>), kept in the store as the
/// fact <c>!schema</c>. On every start the store is brought forward: each migration from its version to
/// <see cref="Current"/> runs in order, and the new version is written with the last one's writes. A store newer
/// than this server (a downgrade) is refused, since this server would misread it; restore the backup taken before
/// the upgrade, or run the newer version.
/// </summary>
internal static class StoreSchema
{
    private const string Fact = "schema";

    /// <summary>1: the RocksDB layout of 2026-12 (events by conversation and seq, cids, cursors, accounts, invites).</summary>
    public const int Current = 1;

    /// <summary>Migration from version <c>i + 1</c> to <c>i + 2</c> at index <c>i</c>; none yet.</summary>
    private static readonly Action<RocksDatabase.Lease>[] Migrations = [];

    /// <summary>Brings the store to <see cref="Current"/>; returns the version it had (0: a new store).</summary>
    public static int Migrate(RocksDatabase database)
    {
        var keys = new RocksKeys.Builder();
        using var lease = database.Enter();
        var stored = lease.Db.Get(keys.StoreFactOf(Fact).Span, lease.Handles.Meta) is { } value ? (int)RecordCodec.ReadNumber(value) : 0;
        if (stored > Current)
        {
            throw new StoreSchemaException($"its store has schema version {stored}, newer than this server reads ({Current}); run the newer server, or restore the backup made before the upgrade");
        }

        // A store made before versions were kept has the layout of version 1.
        for (var version = Math.Max(stored, 1); version < Current; version++)
        {
            Migrations[version - 1](lease);
        }

        if (stored != Current)
        {
            var writer = new RecordCodec.Writer();
            RecordCodec.WriteNumber(writer, Current);
            lease.Db.Put(keys.StoreFactOf(Fact).Span, writer.Span, lease.Handles.Meta, RocksDatabase.Synced);
        }

        return stored;
    }

    /// <summary>Sets the stored version, for tests of what a newer server leaves behind.</summary>
    internal static void Write(RocksDatabase database, int version)
    {
        var writer = new RecordCodec.Writer();
        RecordCodec.WriteNumber(writer, version);
        using var lease = database.Enter();
        lease.Db.Put(new RocksKeys.Builder().StoreFactOf(Fact).Span, writer.Span, lease.Handles.Meta, RocksDatabase.Synced);
    }
}

/// <summary>The store's layout cannot be used by this server.</summary>
internal sealed class StoreSchemaException(string message) : IOException(message);
