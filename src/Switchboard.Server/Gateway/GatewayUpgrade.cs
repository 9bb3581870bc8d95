using System.Buffers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Switchboard.Server.Gateway;

/// <summary>
/// The WebSocket opening handshake (RFC 6455 §4.2) for sockets the gateway owns: reads the request head, answers
/// 101 with the accept key (or an HTTP error and a close), and runs a <see cref="GatewayConnection"/> over .NET's
/// WebSocket framing on the socket's stream.
/// </summary>
internal sealed partial class GatewayUpgrade(GatewayServices services, IHostApplicationLifetime lifetime, IOptions<GatewayOptions> options, ILogger<GatewayUpgrade> logger)
{
    /// <summary>Largest request head the gateway reads; a browser's upgrade request is well under 2 KiB.</summary>
    public const int MaxHeadBytes = 8 * 1024;

    private static readonly byte[] Prefix = "GET /v1/ws"u8.ToArray();
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();
    private static readonly byte[] AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"u8.ToArray();
    private static readonly WebSocketCreationOptions ServerOptions = new() { IsServer = true, KeepAliveInterval = TimeSpan.Zero };

    private ILogger Logger => logger;

    [LoggerMessage(EventId = 1201, Level = LogLevel.Debug, Message = "Gateway handshake failed")]
    private partial void LogHandshakeFailed(Exception exception);

    /// <summary>
    /// Waits for the first bytes and tells whether the request is for <c>/v1/ws</c> (by GET), without consuming them.
    /// </summary>
    public async Task<bool> IsGatewayRequestAsync(Socket socket)
    {
        var peek = new byte[Prefix.Length + 1];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(options.Value.HelloTimeoutSeconds));
        while (true)
        {
            var count = await socket.ReceiveAsync(peek, SocketFlags.Peek, timeout.Token);
            if (count == 0)
            {
                throw new ObjectDisposedException("socket", "closed before its request");
            }

            var have = Math.Min(count, Prefix.Length);
            if (!peek.AsSpan(0, have).SequenceEqual(Prefix.AsSpan(0, have)))
            {
                return false;
            }

            if (count == peek.Length)
            {
                return peek[^1] is (byte)' ' or (byte)'?';
            }

            // The request line came in pieces: a peek returns at once while data is there, so wait a little.
            await Task.Delay(1, timeout.Token);
        }
    }

    /// <summary>
    /// Runs the handshake: the socket's WebSocket and the stream under it once 101 is sent, or null when it was
    /// answered otherwise and closed.
    /// </summary>
    public async Task<(WebSocket WebSocket, GatewaySocketStream Stream)?> AcceptAsync(Socket socket)
    {
        try
        {
            if (await HandshakeAsync(socket))
            {
                var stream = new GatewaySocketStream(socket);
                return (WebSocket.CreateFromStream(stream, ServerOptions), stream);
            }
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            LogHandshakeFailed(ex);
        }

        socket.Dispose();
        return null;
    }

    /// <summary>
    /// The connection's whole life, until it closes (the server stopping closes it with 4003); it disposes the
    /// WebSocket and with it the socket, then calls <paramref name="closed"/>. Never throws.
    /// </summary>
    public Task RunAsync(WebSocket webSocket, GatewaySocketStream stream, Action closed) =>
        new GatewayConnection(webSocket, services, closed, stream).RunAsync(lifetime.ApplicationStopping);

    /// <summary>Reads exactly the request head and answers it; true once 101 is sent.</summary>
    private async Task<bool> HandshakeAsync(Socket socket)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxHeadBytes);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(options.Value.HelloTimeoutSeconds));
            // Peek until the head is complete, then read exactly the head: bytes after it (a client may send its
            // first frame without waiting for 101) stay in the socket for the WebSocket to read.
            int headLength;
            while (true)
            {
                var count = await socket.ReceiveAsync(buffer.AsMemory(0, MaxHeadBytes), SocketFlags.Peek, timeout.Token);
                if (count == 0)
                {
                    return false;
                }

                var end = buffer.AsSpan(0, count).IndexOf(HeadEnd);
                if (end >= 0)
                {
                    headLength = end + HeadEnd.Length;
                    break;
                }

                if (count == MaxHeadBytes)
                {
                    await RespondAsync(socket, 431, "Request Header Fields Too Large", Protocol.ErrorCodes.TooLarge, $"request head over {MaxHeadBytes} bytes");
                    return false;
                }

                await Task.Delay(1, timeout.Token);
            }

            for (var read = 0; read < headLength;)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(read, headLength - read), SocketFlags.None, timeout.Token);
                if (n == 0)
                {
                    return false;
                }

                read += n;
            }

            var head = Encoding.Latin1.GetString(buffer, 0, headLength - HeadEnd.Length);
            if (Parse(head) is not { } key)
            {
                await RespondAsync(socket, 400, "Bad Request", Protocol.ErrorCodes.Invalid, "this endpoint speaks WebSocket only");
                return false;
            }

            if (key.Length == 0)
            {
                await RespondAsync(socket, 426, "Upgrade Required", Protocol.ErrorCodes.Invalid, "WebSocket version 13 only", "Sec-WebSocket-Version: 13\r\n");
                return false;
            }

            var response = Encoding.ASCII.GetBytes(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
                $"Sec-WebSocket-Accept: {AcceptKey(key)}\r\n\r\n");
            await socket.SendAsync(response, SocketFlags.None, timeout.Token);
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The client's key when the head is a WebSocket upgrade of version 13; an empty key for another version; null
    /// when it is no upgrade at all.
    /// </summary>
    internal static string? Parse(string head)
    {
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || requestLine[0] != "GET" || !requestLine[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            return null;
        }

        string? upgrade = null, connection = null, version = null, key = null;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return null;
            }

            var name = line.AsSpan(0, colon).Trim();
            var value = line[(colon + 1)..].Trim();
            if (name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))
            {
                upgrade = value;
            }
            else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
            {
                connection = connection is null ? value : connection + "," + value;
            }
            else if (name.Equals("Sec-WebSocket-Version", StringComparison.OrdinalIgnoreCase))
            {
                version = value;
            }
            else if (name.Equals("Sec-WebSocket-Key", StringComparison.OrdinalIgnoreCase))
            {
                key = value;
            }
        }

        var isUpgrade = upgrade is not null && upgrade.Split(',').Any(t => t.Trim().Equals("websocket", StringComparison.OrdinalIgnoreCase))
            && connection is not null && connection.Split(',').Any(t => t.Trim().Equals("upgrade", StringComparison.OrdinalIgnoreCase))
            && key is not null && IsValidKey(key);
        if (!isUpgrade)
        {
            return null;
        }

        return version == "13" ? key : "";
    }

    private static bool IsValidKey(string key)
    {
        Span<byte> decoded = stackalloc byte[18];
        return Convert.TryFromBase64String(key, decoded, out var written) && written == 16;
    }

    internal static string AcceptKey(string key)
    {
        Span<byte> hash = stackalloc byte[20];
#pragma warning disable CA5350 // RFC 6455 §4.2.2 fixes SHA-1 for the accept key; it protects nothing
        SHA1.HashData([.. Encoding.ASCII.GetBytes(key), .. AcceptGuid], hash);
#pragma warning restore CA5350
        return Convert.ToBase64String(hash);
    }

    private static async Task RespondAsync(Socket socket, int status, string reason, string code, string message, string extraHeaders = "")
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new Protocol.ErrorBody(code, message), Protocol.SwitchboardJsonContext.Default.ErrorBody);
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {body.Length}\r\n" +
            $"Connection: close\r\n{extraHeaders}\r\n");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await socket.SendAsync(head, SocketFlags.None, timeout.Token);
        await socket.SendAsync(body, SocketFlags.None, timeout.Token);
        socket.Shutdown(SocketShutdown.Send);

        // Read what the client still sends (the rest of an oversized head) until it closes, a little while at
        // most: closing with unread input would reset the connection and could destroy the answer in flight.
        var scratch = new byte[1024];
        using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            for (var total = 0; total < 64 * 1024;)
            {
                var n = await socket.ReceiveAsync(scratch, SocketFlags.None, linger.Token);
                if (n == 0)
                {
                    break;
                }

                total += n;
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
        }
    }
}
