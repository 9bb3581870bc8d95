using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Switchboard.Server.Accounts;
using Switchboard.Server.Hosting;
using Switchboard.Server.Storage;

namespace Switchboard.Tests;

/// <summary>The storage contract on the embedded RocksDB store.</summary>
public sealed class RocksStoreContractTests : MessageStoreContract
{
    private readonly List<string> _places = [];

    private protected override string NewPlace()
    {
        var place = Path.Combine(Path.GetTempPath(), "switchboard-contract-" + Guid.NewGuid().ToString("N"));
        _places.Add(place);
        return place;
    }

    private protected override Task<StoreUnderTest> OpenAsync(string place)
    {
        var database = new RocksDatabase(Options.Create(new ServerOptions { DataDir = place }), Options.Create(new StorageOptions()), NullLogger<RocksDatabase>.Instance);
        return Task.FromResult(new StoreUnderTest(place, new RocksMessageStore(database), new RocksAccountStore(database), () =>
        {
            database.Dispose();
            return ValueTask.CompletedTask;
        }));
    }

    /// <summary>
    /// The files as a kill -9 leaves them: copied while the database is open, without closing it (no flush, no
    /// clean shutdown), then opened from the copy, which recovers from its log. What was written to the log is there.
    /// </summary>
    private protected override async Task<StoreUnderTest> CrashAndReopenAsync(StoreUnderTest store)
    {
        var image = NewPlace();
        var source = Path.Combine(store.Place, "store");
        var target = Path.Combine(image, "store");
        Directory.CreateDirectory(target);
        foreach (var file in Directory.EnumerateFiles(source))
        {
            if (Path.GetFileName(file) != "LOCK")
            {
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
            }
        }

        await store.DisposeAsync();
        return await OpenAsync(image);
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var place in _places)
        {
            try
            {
                Directory.Delete(place, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
