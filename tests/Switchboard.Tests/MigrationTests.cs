using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Switchboard.Server.Accounts;

namespace Switchboard.Tests;

/// <summary>A data dir written by the earlier SQLite store is taken over on the first start, with nothing lost.</summary>
public sealed class MigrationTests
{
    // The earlier store's schema, version 1, as it was written to data dirs.
    private const string SchemaV1 = """
        CREATE TABLE users (user TEXT PRIMARY KEY, pw_hash BLOB NOT NULL, pw_salt BLOB NOT NULL, pw_params TEXT NOT NULL, created INTEGER NOT NULL, last_seen INTEGER) WITHOUT ROWID;
        CREATE TABLE devices (user TEXT NOT NULL, device INTEGER NOT NULL, name TEXT NOT NULL, token_hash BLOB, created INTEGER NOT NULL, last_active INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, device)) WITHOUT ROWID;
        CREATE UNIQUE INDEX devices_token ON devices(token_hash) WHERE token_hash IS NOT NULL;
        CREATE TABLE conversations (conv TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, last_seq INTEGER NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE members (conv TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, joined_seq INTEGER NOT NULL, removed_seq INTEGER, joined_ts INTEGER NOT NULL, PRIMARY KEY (conv, user)) WITHOUT ROWID;
        CREATE INDEX members_user ON members(user, conv);
        CREATE TABLE events (conv TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL, sender TEXT NOT NULL, dev INTEGER NOT NULL, kind TEXT NOT NULL, cid TEXT NOT NULL, body TEXT, e2ee TEXT, reply_to INTEGER, target INTEGER, system TEXT, PRIMARY KEY (conv, seq)) WITHOUT ROWID;
        CREATE UNIQUE INDEX events_cid ON events(sender, cid);
        CREATE TABLE device_cursors (user TEXT NOT NULL, device INTEGER NOT NULL, conv TEXT NOT NULL, delivered INTEGER NOT NULL, PRIMARY KEY (user, device, conv)) WITHOUT ROWID;
        CREATE TABLE member_cursors (conv TEXT NOT NULL, user TEXT NOT NULL, delivered INTEGER NOT NULL, read INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (conv, user)) WITHOUT ROWID;
        PRAGMA user_version = 1;
        """;

    [Fact]
    public async Task An_earlier_sqlite_data_dir_is_imported_on_first_start_and_everything_goes_on_from_it()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-migrate-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDir);
        var alice = TestServer.NewUser("ma");
        var bob = TestServer.NewUser("mb");
        var dm = Conv.Direct(alice, bob);
        const string Group = "grp:77";
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var aliceToken = Tokens.Create();
        var bobToken = Tokens.Create();
        var password = new PasswordHasher(Options.Create(new AccountsOptions { Argon2MemoryKiB = 64, Argon2Passes = 1 })).Hash("correct horse");

        using (var db = new SqliteConnection($"Data Source={Path.Combine(dataDir, "switchboard.db")};Pooling=False"))
        {
            db.Open();
            Exec(db, SchemaV1);
            foreach (var user in new[] { alice, bob })
            {
                Exec(db, "INSERT INTO users VALUES ($u, $h, $s, $p, $t, $t)", ("$u", user), ("$h", password.Hash), ("$s", password.Salt), ("$p", password.Parameters), ("$t", now));
            }

            Exec(db, "INSERT INTO devices VALUES ($u, 1, 'laptop', $h, $t, $t, 0)", ("$u", alice), ("$h", SHA256.HashData(Encoding.UTF8.GetBytes(aliceToken))), ("$t", now));
            Exec(db, "INSERT INTO devices VALUES ($u, 1, 'phone', $h, $t, $t, 0)", ("$u", bob), ("$h", SHA256.HashData(Encoding.UTF8.GetBytes(bobToken))), ("$t", now));
            Exec(db, "INSERT INTO conversations VALUES ($c, 'direct', NULL, 3, $t)", ("$c", dm), ("$t", now));
            Exec(db, "INSERT INTO conversations VALUES ($c, 'group', 'old team', 2, $t)", ("$c", Group), ("$t", now));
            Exec(db, "INSERT INTO members VALUES ($c, $u, 'member', 1, NULL, $t)", ("$c", dm), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO members VALUES ($c, $u, 'member', 1, NULL, $t)", ("$c", dm), ("$u", bob), ("$t", now));
            Exec(db, "INSERT INTO members VALUES ($c, $u, 'admin', 1, NULL, $t)", ("$c", Group), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO members VALUES ($c, $u, 'member', 1, NULL, $t)", ("$c", Group), ("$u", bob), ("$t", now));
            Exec(db, "INSERT INTO events VALUES ($c, 1, 101, $t, $u, 1, 'text', 'old-1', 'hello bob', NULL, NULL, NULL, NULL)", ("$c", dm), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO events VALUES ($c, 2, 102, $t, $u, 1, 'media', 'old-2', NULL, '{\"ct\":\"AQID\"}', 1, NULL, NULL)", ("$c", dm), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO events VALUES ($c, 3, 103, $t, $u, 1, 'delete', 'old-3', NULL, NULL, NULL, 1, NULL)", ("$c", dm), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO events VALUES ($c, 1, 104, $t, $u, 1, 'system', 'system:104', NULL, NULL, NULL, NULL, $s)", ("$c", Group), ("$u", alice), ("$t", now), ("$s", $"{{\"op\":\"created\",\"users\":[\"{bob}\"],\"name\":\"old team\"}}"));
            Exec(db, "INSERT INTO events VALUES ($c, 2, 105, $t, $u, 1, 'text', 'old-g', 'team news', NULL, NULL, NULL, NULL)", ("$c", Group), ("$u", alice), ("$t", now));
            Exec(db, "INSERT INTO device_cursors VALUES ($u, 1, $c, 1)", ("$u", bob), ("$c", dm));
            Exec(db, "INSERT INTO device_cursors VALUES ($u, 1, $c, 2)", ("$u", bob), ("$c", Group));
            Exec(db, "INSERT INTO member_cursors VALUES ($c, $u, 1, 1, $t)", ("$c", dm), ("$u", bob), ("$t", now));
        }

        try
        {
            var server = await TestServer.StartAsync(dataDir: dataDir); // stopped, not disposed: disposing deletes the data dir
            {
                Assert.False(File.Exists(Path.Combine(dataDir, "switchboard.db")));
                Assert.True(File.Exists(Path.Combine(dataDir, "switchboard.db.imported")));

                // The old tokens still work, and bob's device resumes from its cursors: the direct messages after 1.
                await using var bobClient = await TestClient.ConnectAsync(server, bob, 1, bobToken);
                var replay = TestClient.Messages(await bobClient.UntilLiveAsync());
                Assert.Equal([(dm, 2L), (dm, 3L)], replay.Select(m => (m.GetProperty("conv").GetString()!, m.GetProperty("seq").GetInt64())));
                Assert.True(replay[0].TryGetProperty("e2ee", out var e2ee), replay[0].GetRawText());
                Assert.Equal("{\"ct\":\"AQID\"}", e2ee.GetRawText());

                await using var aliceClient = await TestClient.ConnectAsync(server, alice, 1, aliceToken);
                await aliceClient.UntilLiveAsync();
                var dup = await aliceClient.SendAckedAsync(dm, "hello bob", "old-1");
                Assert.True(dup.GetProperty("dup").GetBoolean());
                Assert.Equal(1, dup.GetProperty("seq").GetInt64());
                Assert.Equal(4, (await aliceClient.SendAckedAsync(dm, "after the move")).GetProperty("seq").GetInt64());
                Assert.Equal(3, (await aliceClient.SendAckedAsync(Group, "group goes on")).GetProperty("seq").GetInt64());

                var (_, history) = await server.GetAsync($"/v1/conversations/{dm}/messages", aliceToken);
                Assert.Equal(4, history.GetProperty("messages").GetArrayLength());
                var (_, group) = await server.GetAsync($"/v1/groups/{Group}", bobToken);
                Assert.Equal("old team", group.GetProperty("name").GetString());
                var (_, list) = await server.GetAsync("/v1/conversations", bobToken);
                Assert.Equal(2, list.GetArrayLength());

                // Passwords made by the earlier store still log in.
                var (device, _) = await server.LinkAsync(bob);
                Assert.Equal(2, device);
                await server.StopAsync();
            }

            // A second start does not import again.
            await using (var again = await TestServer.StartAsync(dataDir: dataDir))
            {
                var (_, history) = await again.GetAsync($"/v1/conversations/{dm}/messages", aliceToken);
                Assert.Equal(4, history.GetProperty("messages").GetArrayLength());
            }
        }
        finally
        {
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static void Exec(SqliteConnection db, string sql, params (string Name, object Value)[] parameters)
    {
        using var command = db.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        command.ExecuteNonQuery();
    }
}

/// <summary>Online backups: a checkpoint of the running store opens as a store with everything acked before it.</summary>
public sealed class CheckpointTests
{
    [Fact]
    public async Task A_checkpoint_taken_while_running_holds_every_acked_message()
    {
        await using var server = await TestServer.StartAsync();
        var alice = await server.NewClientAsync();
        var conv = Conv.Direct(alice.User, await server.RegisterAsync());
        for (var i = 0; i < 20; i++)
        {
            await alice.SendAckedAsync(conv, $"m{i}");
        }

        using var response = await server.Http.PostAsync("/v1/admin/checkpoint", null);
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        var path = (await System.Net.Http.Json.HttpContentJsonExtensions.ReadFromJsonAsync<System.Text.Json.JsonElement>(response.Content)).GetProperty("path").GetString()!;
        Assert.StartsWith(Path.Combine(server.DataDir, "checkpoints"), path, StringComparison.Ordinal);
        await alice.SendAckedAsync(conv, "after the checkpoint");

        // The checkpoint is a store of its own: open it as the data dir of another instance.
        var copy = Path.Combine(Path.GetTempPath(), "switchboard-restore-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(copy);
        Directory.Move(path, Path.Combine(copy, "store"));
        try
        {
            var database = new Switchboard.Server.Storage.RocksDatabase(
                Microsoft.Extensions.Options.Options.Create(new Switchboard.Server.Hosting.ServerOptions { DataDir = copy }),
                Microsoft.Extensions.Options.Options.Create(new Switchboard.Server.Storage.StorageOptions()),
                Microsoft.Extensions.Logging.Abstractions.NullLogger<Switchboard.Server.Storage.RocksDatabase>.Instance);
            using (database)
            {
                var store = new Switchboard.Server.Storage.RocksMessageStore(database);
                var events = await store.ReadAfterAsync(conv, 0, long.MaxValue, 100);
                Assert.Equal(Enumerable.Range(0, 20).Select(i => $"m{i}"), events.Select(e => e.Body));
            }
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }
}
