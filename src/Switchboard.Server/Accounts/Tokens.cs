using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Switchboard.Server.Accounts;

/// <summary>
/// Device tokens: 32 random bytes sent base64url, stored as their SHA-256. A fast hash is right here because
/// the token itself carries 256 bits of entropy; a stolen database cannot be turned back into tokens.
/// </summary>
internal static class Tokens
{
    public static string Create() => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    public static byte[] HashOf(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));
}
