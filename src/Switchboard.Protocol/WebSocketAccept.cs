using System.Security.Cryptography;
using System.Text;

namespace Switchboard.Protocol;

/// <summary>The opening handshake's proof (RFC 6455 §4.2.2), for the server that answers and the client that checks.</summary>
internal static class WebSocketAccept
{
    private static readonly byte[] Guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"u8.ToArray();

    /// <summary>The <c>Sec-WebSocket-Accept</c> value for a client's <c>Sec-WebSocket-Key</c>.</summary>
    public static string For(string key)
    {
        Span<byte> hash = stackalloc byte[20];
#pragma warning disable CA5350 // RFC 6455 fixes SHA-1 here; it protects nothing
        SHA1.HashData([.. Encoding.ASCII.GetBytes(key), .. Guid], hash);
#pragma warning restore CA5350
        return Convert.ToBase64String(hash);
    }
}
