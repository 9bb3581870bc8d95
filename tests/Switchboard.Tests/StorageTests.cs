using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;
using Switchboard.Server.Storage;

namespace Switchboard.Tests;

public sealed class StorageTests
{
    [Fact]
    public void Every_connection_commits_with_fsync_in_WAL_mode_including_pooled_ones()
    {
        var dir = Path.Combine(Path.GetTempPath(), "switchboard-storage-" + Guid.NewGuid().ToString("N"));
        try
        {
            var database = new SqliteDatabase(Options.Create(new ServerOptions { DataDir = dir }));
            for (var i = 0; i < 3; i++) // the second and third come from the pool
            {
                using var connection = database.Open();
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA synchronous";
                Assert.Equal(2L, (long)command.ExecuteScalar()!); // FULL: fsync on every commit
                command.CommandText = "PRAGMA journal_mode";
                Assert.Equal("wal", (string)command.ExecuteScalar()!);
                command.CommandText = "PRAGMA busy_timeout";
                Assert.Equal(5000L, (long)command.ExecuteScalar()!);
            }
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }
}
