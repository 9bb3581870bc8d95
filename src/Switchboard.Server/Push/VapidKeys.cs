using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Switchboard.Server.Hosting;

namespace Switchboard.Server.Push;

/// <summary>
/// The server's VAPID key pair (RFC 8292), base64url: from the settings, else made once and kept in
/// <c>DataDir/push-vapid.json</c> (0600, as every file the server makes), so subscriptions stay valid across restarts.
/// </summary>
internal sealed class VapidKeys
{
    public VapidKeys(IOptions<PushOptions> options, IOptions<ServerOptions> server)
    {
        if (options.Value is { VapidPublicKey: { } configuredPublic, VapidPrivateKey: { } configuredPrivate })
        {
            (PublicKey, PrivateKey) = (configuredPublic, configuredPrivate);
            return;
        }

        var path = Path.Combine(Path.GetFullPath(server.Value.DataDir), "push-vapid.json");
        if (File.Exists(path) && JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(path)) is { } saved
            && saved.TryGetValue("public", out var savedPublic) && saved.TryGetValue("private", out var savedPrivate))
        {
            (PublicKey, PrivateKey) = (savedPublic, savedPrivate);
            return;
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var parameters = key.ExportParameters(includePrivateParameters: true);
        PublicKey = Base64Url.EncodeToString([0x04, .. parameters.Q.X!, .. parameters.Q.Y!]);
        PrivateKey = Base64Url.EncodeToString(parameters.D!);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = path + ".new";
        File.WriteAllText(temporary, JsonSerializer.Serialize(new Dictionary<string, string> { ["public"] = PublicKey, ["private"] = PrivateKey }));
        File.Move(temporary, path, overwrite: true);
    }

    public string PublicKey { get; }

    public string PrivateKey { get; }
}
