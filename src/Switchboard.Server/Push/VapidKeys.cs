using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Push;

/// <summary>
/// The server's VAPID key pair (RFC 8292), base64url: from the settings, else made once and kept in
/// <c>DataDir/push-vapid.json</c> (0600, as every file the server makes), so subscriptions stay valid across restarts.
/// In a cluster every node must sign with the same pair (a subscription names one public key): the first node to
/// start makes it and keeps it on the first shard, and every node reads it from there.
/// </summary>
internal sealed class VapidKeys
{
    public VapidKeys(IOptions<PushOptions> options, IOptions<ServerOptions> server, Storage.Postgres.PgShards? shards = null)
    {
        if (options.Value is { VapidPublicKey: { } configuredPublic, VapidPrivateKey: { } configuredPrivate })
        {
            (PublicKey, PrivateKey) = (configuredPublic, configuredPrivate);
            return;
        }

        if (shards is not null)
        {
            _shards = shards; // read by LoadSharedAsync when the node starts, once its shards are checked
            return;
        }

        var path = Path.Combine(Path.GetFullPath(server.Value.DataDir), "push-vapid.json");
        if (File.Exists(path) && JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(path)) is { } saved
            && saved.TryGetValue("public", out var savedPublic) && saved.TryGetValue("private", out var savedPrivate))
        {
            (PublicKey, PrivateKey) = (savedPublic, savedPrivate);
            return;
        }

        (PublicKey, PrivateKey) = Make();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = path + ".new";
        File.WriteAllText(temporary, JsonSerializer.Serialize(new Dictionary<string, string> { ["public"] = PublicKey, ["private"] = PrivateKey }));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>A new P-256 pair: the uncompressed public point and the private scalar, base64url.</summary>
    private static (string Public, string Private) Make()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var parameters = key.ExportParameters(includePrivateParameters: true);
        return (Base64Url.EncodeToString([0x04, .. parameters.Q.X!, .. parameters.Q.Y!]), Base64Url.EncodeToString(parameters.D!));
    }

    private readonly Storage.Postgres.PgShards? _shards;
    private string? _publicKey;
    private string? _privateKey;

    /// <summary>
    /// Cluster mode: takes the cluster's pair from the first shard, making it there if this node is the first. Called
    /// by the node's start, before anything pushes or serves the key.
    /// </summary>
    public async Task LoadSharedAsync(CancellationToken cancellationToken)
    {
        if (_shards is null || _publicKey is not null)
        {
            return;
        }

        var (madePublic, madePrivate) = Make();
        await using var command = _shards[0].CreateCommand(
            "INSERT INTO sb_meta (key, value) VALUES ('vapid', @pair) ON CONFLICT (key) DO NOTHING; SELECT value FROM sb_meta WHERE key = 'vapid'");
        command.Parameters.AddWithValue("pair", JsonSerializer.Serialize(new Dictionary<string, string> { ["public"] = madePublic, ["private"] = madePrivate }));
        var kept = JsonSerializer.Deserialize<Dictionary<string, string>>((string)(await command.ExecuteScalarAsync(cancellationToken))!)!;
        (_publicKey, _privateKey) = (kept["public"], kept["private"]);
    }

    public string PublicKey
    {
        get => _publicKey ?? throw new InvalidOperationException("the cluster's VAPID key is read when the node starts");
        private init => _publicKey = value;
    }

    public string PrivateKey
    {
        get => _privateKey ?? throw new InvalidOperationException("the cluster's VAPID key is read when the node starts");
        private init => _privateKey = value;
    }
}
