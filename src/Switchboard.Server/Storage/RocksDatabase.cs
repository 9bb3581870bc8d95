using System.Globalization;
using Microsoft.Extensions.Options;
using RocksDbSharp;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Storage;

/// <summary>The store cannot be used right now (stopped, or reopening after a failed write); callers answer <c>unavailable</c>.</summary>
internal sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The data dir cannot be made, written or locked (read-only, not a directory, in use by another server).</summary>
internal sealed class DataDirException(string dataDir, Exception inner)
    : Exception(inner.Message.Contains("lock file", StringComparison.OrdinalIgnoreCase)
        ? $"data dir {dataDir} is in use by another server (it holds store/LOCK)"
        : $"data dir {dataDir}: {inner.Message}", inner);

/// <summary>
/// The embedded database: one RocksDB under <c>DataDir/store</c>, with four column families (events, the cid index,
/// cursors, and everything else). It hands out the open handles to one call at a time (<see cref="Enter"/>), so
/// that closing or reopening never frees a handle a reader still uses: RocksDB's native calls on a closed database
/// crash the process rather than throw.
/// </summary>
internal sealed partial class RocksDatabase : IDisposable
{
    private const string EventsFamily = "events";
    private const string CidsFamily = "cids";
    private const string CursorsFamily = "cursors";

    private readonly StorageOptions _options;
    private readonly ILogger<RocksDatabase> _logger;
    private readonly Lock _gate = new();
    private Handles? _handles;
    private bool _disposed;

    public RocksDatabase(IOptions<ServerOptions> server, IOptions<StorageOptions> options, ILogger<RocksDatabase> logger)
    {
        _options = options.Value;
        _logger = logger;
        DataDir = Path.GetFullPath(server.Value.DataDir);
        StoreDir = Path.Combine(DataDir, "store");
        try
        {
            var (changed, example) = Hosting.FileModes.Secure(DataDir);
            if (changed > 0)
            {
                LogModesTightened(changed, DataDir, example!);
            }

            Directory.CreateDirectory(StoreDir);
            _handles = Open();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or RocksDbException or StoreUnavailableException)
        {
            throw new DataDirException(DataDir, ex);
        }

        SqliteImport.ImportIfPresent(this, logger);
        try
        {
            StoreSchema.Migrate(this);
        }
        catch (StoreSchemaException ex)
        {
            Dispose();
            throw new DataDirException(DataDir, ex);
        }
    }

    public string DataDir { get; }

    public string StoreDir { get; }

    /// <summary>Synced writes: the batch is in the log and fsync'd when Write returns.</summary>
    public static readonly WriteOptions Synced = new WriteOptions().SetSync(true);

    /// <summary>Writes that need no fsync of their own (bookkeeping such as last_active); the next synced write carries them.</summary>
    public static readonly WriteOptions Unsynced = new WriteOptions().SetSync(false);

    /// <summary>The open database for one call; dispose the lease when done. Throws <see cref="StoreUnavailableException"/> when closed.</summary>
    public Lease Enter()
    {
        var spins = 0;
        while (true)
        {
            var handles = Volatile.Read(ref _handles) ?? TryOpenAgain();
            if (handles is null)
            {
                throw new StoreUnavailableException("the store is closed");
            }

            Interlocked.Increment(ref handles.Users);
            if (Volatile.Read(ref handles.Closing) == 0)
            {
                return new Lease(handles);
            }

            // Closing: step back and look again (a reopen swaps in new handles within moments).
            Interlocked.Decrement(ref handles.Users);
            if (++spins > 200)
            {
                throw new StoreUnavailableException("the store is reopening");
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// Closes and opens the database again: after a failed write RocksDB refuses further writes until it has
    /// recovered from its log, and the C API has no resume. Waits for calls in progress to finish first.
    /// </summary>
    public void Reopen()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            Close(Interlocked.Exchange(ref _handles, null));
            _nextOpen = Environment.TickCount64;
            Volatile.Write(ref _handles, Open());
        }
    }

    private long _nextOpen;

    /// <summary>After a reopen that failed (the disk still full, say), tries again, at most once a second.</summary>
    private Handles? TryOpenAgain()
    {
        lock (_gate)
        {
            if (_disposed || _handles is not null || Environment.TickCount64 < _nextOpen)
            {
                return _handles;
            }

            _nextOpen = Environment.TickCount64 + 1000;
            try
            {
                Volatile.Write(ref _handles, Open());
            }
            catch (StoreUnavailableException ex)
            {
                LogReopenFailed(ex);
            }

            return _handles;
        }
    }

    [LoggerMessage(EventId = 1011, Level = LogLevel.Error, Message = "The store could not be opened again; retrying")]
    private partial void LogReopenFailed(Exception exception);

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Close(Interlocked.Exchange(ref _handles, null));
        }
    }

    /// <summary>Bytes written by the log, flushes and compactions since the database was opened (statistics).</summary>
    public (long Wal, long Flush, long Compaction) WrittenBytes()
    {
        string? text;
        using (var lease = TryEnter())
        {
            text = lease.Handles?.Options.GetStatisticsString();
        }

        if (text is null)
        {
            return default;
        }

        long Counter(string name)
        {
            var at = text.IndexOf(name + " COUNT : ", StringComparison.Ordinal);
            if (at < 0)
            {
                return 0;
            }

            var start = at + name.Length + 9;
            var end = text.IndexOf('\n', start);
            return long.TryParse(text.AsSpan(start, (end < 0 ? text.Length : end) - start).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : 0;
        }

        return (Counter("rocksdb.wal.bytes"), Counter("rocksdb.flush.write.bytes"), Counter("rocksdb.compact.write.bytes"));
    }

    /// <summary>
    /// A consistent copy of the store while it runs, in a new directory under <c>DataDir/checkpoints</c>: RocksDB
    /// hard-links the table files (no copy while they are on the same file system) and copies the log and manifest.
    /// The directory opens as a store of its own; archive it, then delete it.
    /// </summary>
    public string Checkpoint()
    {
        var root = Path.Combine(DataDir, "checkpoints");
        Directory.CreateDirectory(root);
        var target = Path.Combine(root, DateTimeOffset.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..6]);
        using var lease = Enter();
        using var checkpoint = lease.Db.Checkpoint();
        checkpoint.Save(target);
        return target;
    }

    /// <summary>Memory the store holds outside the managed heap, and its files on disk (RocksDB properties, all families).</summary>
    public (long Memtables, long BlockCache, long TableReaders, long Files) Usage()
    {
        using var lease = TryEnter();
        if (lease.Handles is not { } h)
        {
            return default;
        }

        long Sum(string property)
        {
            long total = 0;
            foreach (var family in new[] { h.Events, h.Cids, h.Cursors, h.Meta })
            {
                total += long.TryParse(h.Db.GetProperty(property, family), NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : 0;
            }

            return total;
        }

        var cache = long.TryParse(h.Db.GetProperty("rocksdb.block-cache-usage", h.Events), NumberStyles.None, CultureInfo.InvariantCulture, out var used) ? used : 0;
        return (Sum("rocksdb.cur-size-all-mem-tables"), cache, Sum("rocksdb.estimate-table-readers-mem"), Sum("rocksdb.total-sst-files-size"));
    }

    /// <summary>A lease that may be empty (the store is closed), for side readings that must not throw.</summary>
    private Lease TryEnter()
    {
        try
        {
            return Enter();
        }
        catch (StoreUnavailableException)
        {
            return default;
        }
    }

    private Handles Open()
    {
        // One block cache for every family, for data blocks: recent events and cursors. Filters and indexes are
        // not in it: they stay with each open table file (about 1.25 bytes per key), so a lookup never reads and
        // checksums a whole filter block again because a scan pushed it out of a small cache.
        var cache = Cache.CreateLru((ulong)_options.BlockCacheMegabytes << 20);
        BlockBasedTableOptions Table(bool filter)
        {
            var table = new BlockBasedTableOptions().SetBlockCache(cache).SetCacheIndexAndFilterBlocks(false).SetFormatVersion(5);
            // 10 bits per key: about 1 % false positives. Most cid, head and cursor lookups of the write path
            // are for keys that do not exist (a new cid, a conversation's first message), and a filter answers
            // those without touching a data block.
            return filter ? table.SetFilterPolicy(BloomFilterPolicy.Create(10, false)) : table;
        }

        ColumnFamilyOptions Family(int writeBufferMegabytes, bool lookups)
        {
            var family = new ColumnFamilyOptions()
                .SetBlockBasedTableFactory(Table(lookups))
                .SetWriteBufferSize((ulong)writeBufferMegabytes << 20)
                .SetMaxWriteBufferNumber(3)
                .SetCompression(Compression.Lz4)
                .SetLevelCompactionDynamicLevelBytes(true);
            if (lookups)
            {
                // The same for the memtable: a small bloom filter over whole keys skips the skiplist for misses.
                family.SetMemtablePrefixBloomSizeRatio(0.02);
                Native.Instance.rocksdb_options_set_memtable_whole_key_filtering(family.Handle, 1);
            }

            return family;
        }

        // Memtable sizes per family follow what each one takes per message: an event is most of the bytes. Events
        // are read by range (replay, history), not by key, so their family has no filters.
        var budget = _options.WriteBufferMegabytes;
        var families = new ColumnFamilies(Family(Math.Max(2, budget / 8), lookups: true))
        {
            { EventsFamily, Family(Math.Max(2, budget / 2), lookups: false) },
            { CidsFamily, Family(Math.Max(2, budget / 4), lookups: true) },
            { CursorsFamily, Family(Math.Max(2, budget / 4), lookups: true) },
        };

        var options = new DbOptions()
            .SetCreateIfMissing(true)
            .SetCreateMissingColumnFamilies(true)
            .SetDbWriteBufferSize((ulong)budget << 20) // all memtables together stay within the budget
            .SetMaxTotalWalSize((ulong)budget << 21) // a quiet family's old log files are flushed out, not kept
            .SetBytesPerSync(1UL << 20) // flushes and compactions write back steadily instead of in one burst
            .SetMaxOpenFiles(_options.MaxOpenFiles)
            .SetKeepLogFileNum(3)
            .SetMaxLogFileSize(8UL << 20)
            .SetInfoLogLevel(InfoLogLevel.Warn)
            // Files are read and written through descriptors, never mapped (RocksDB's defaults, said here so they
            // stay): a file that goes away or becomes unwritable under a mapping kills the process with SIGBUS,
            // where through a descriptor it is an I/O error that the server answers with `unavailable`.
            .SetAllowMmapReads(false)
            .SetAllowMmapWrites(false)
            .EnableStatistics();
        Native.Instance.rocksdb_options_set_max_background_jobs(options.Handle, Math.Max(2, Environment.ProcessorCount));
        try
        {
            var db = RocksDb.Open(options, StoreDir, families);
            return new Handles(db, options, db.GetColumnFamily(EventsFamily), db.GetColumnFamily(CidsFamily), db.GetColumnFamily(CursorsFamily), db.GetDefaultColumnFamily());
        }
        catch (RocksDbException ex)
        {
            throw new StoreUnavailableException($"cannot open the store in {StoreDir}: {ex.Message}", ex);
        }
    }

    private void Close(Handles? handles)
    {
        if (handles is null)
        {
            return;
        }

        Interlocked.Exchange(ref handles.Closing, 1);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref handles.Users) > 0)
        {
            if (waited.Elapsed > TimeSpan.FromSeconds(30))
            {
                // A call stuck for this long holds native handles; closing under it would crash the process.
                LogCloseAbandoned(Volatile.Read(ref handles.Users));
                return;
            }

            Thread.Sleep(1);
        }

        handles.Db.Dispose();
    }

    [LoggerMessage(EventId = 1012, Level = LogLevel.Warning, Message = "{Count} files or directories under the data dir {DataDir} were open to the group or others (for example {Example}); they are now the server user's alone (0600 files, 0700 directories)")]
    private partial void LogModesTightened(int count, string dataDir, string example);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Error, Message = "The store was not closed: {Users} calls still used it after 30 s")]
    private partial void LogCloseAbandoned(int users);

    /// <summary>The open database and its column families; <see cref="Users"/> counts the calls using them.</summary>
    internal sealed class Handles(RocksDb db, DbOptions options, ColumnFamilyHandle events, ColumnFamilyHandle cids, ColumnFamilyHandle cursors, ColumnFamilyHandle meta)
    {
        public int Users;
        public int Closing;

        public RocksDb Db { get; } = db;

        /// <summary>Kept: the statistics belong to the options object the database was opened with.</summary>
        public DbOptions Options { get; } = options;

        public ColumnFamilyHandle Events { get; } = events;
        public ColumnFamilyHandle Cids { get; } = cids;
        public ColumnFamilyHandle Cursors { get; } = cursors;
        public ColumnFamilyHandle Meta { get; } = meta;
    }

    /// <summary>One call's hold on the open handles.</summary>
    internal readonly struct Lease(Handles handles) : IDisposable
    {
        public Handles Handles { get; } = handles;

        public RocksDb Db => Handles.Db;

        public void Dispose()
        {
            if (Handles is not null)
            {
                Interlocked.Decrement(ref Handles.Users);
            }
        }
    }
}
