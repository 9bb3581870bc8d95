using System.Buffers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Switchboard.Server.Gateway;

/// <summary>
/// The WebSocket opening handshake (RFC 6455 §4.2) for sockets the gateway owns: reads the request head, answers
/// 101 with the accept key (or an HTTP error and a close), and runs a <see cref="GatewayConnection"/> over .NET's
/// WebSocket framing on the socket's stream.
/// </summary>
internal sealed partial class GatewayUpgrade(GatewayServices services, IHostApplicationLifetime lifetime, IOptions<GatewayOptions> options, Web.OriginPolicy origins, ILogger<GatewayUpgrade> logger)
{
    /// <summary>Largest request head the gateway reads; a browser's upgrade request is well under 2 KiB.</summary>
    public const int MaxHeadBytes = 8 * 1024;

    private static readonly byte[] Prefix = "GET /v1/ws"u8.ToArray();
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();
    private static readonly WebSocketCreationOptions ServerOptions = new() { IsServer = true, KeepAliveInterval = TimeSpan.Zero };

    private ILogger Logger => logger;

    /// <summary>The bounds on connections that have not authenticated yet.</summary>
    public GatewayAdmission Admission => services.Admission;

    [LoggerMessage(EventId = 1201, Level = LogLevel.Debug, Message = "Gateway handshake failed")]
    private partial void LogHandshakeFailed(Exception exception);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Accepting a connection failed; the listener goes on")]
    public partial void LogAcceptFailed(Exception exception);

    /// <summary>
    /// Waits for the first bytes and tells whether the request is for <c>/v1/ws</c> (by GET), without consuming them.
    /// </summary>
    public async Task<bool> IsGatewayRequestAsync(Socket socket, CancellationToken cancellationToken)
    {
        var peek = new byte[Prefix.Length + 1];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(options.Value.HelloTimeoutSeconds));
        var wait = 1;
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

            // The request line came in pieces. A peek returns at once while any byte is there, so wait before
            // looking again, longer each time: a client that stalls here costs a few wake-ups, not a core.
            await Task.Delay(wait, timeout.Token);
            wait = Math.Min(wait * 2, 50);
        }
    }

    /// <summary>
    /// Runs the handshake: the socket's WebSocket and the stream under it once 101 is sent, or null when it was
    /// answered otherwise and closed.
    /// </summary>
    public async Task<(WebSocket WebSocket, GatewaySocketStream Stream)?> AcceptAsync(Socket socket, GatewayAdmission.Slot admission, CancellationToken cancellationToken)
    {
        try
        {
            // Non-blocking: sends are tried straight away and fall back to asynchronous ones (SendAllAsync).
            socket.Blocking = false;
            if (await HandshakeAsync(socket, admission, cancellationToken) is { } after)
            {
                var stream = new GatewaySocketStream(socket, after);
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
    public Task RunAsync(WebSocket webSocket, GatewaySocketStream stream, GatewayAdmission.Slot admission, Action closed) =>
        new GatewayConnection(webSocket, services, admission, closed, stream).RunAsync(lifetime.ApplicationStopping);

    /// <summary>
    /// Reads the request head and answers it. Once 101 is sent, returns the bytes read past the head (a client may
    /// send its first frame without waiting for 101), which the WebSocket reads first; null when the request was
    /// answered otherwise.
    /// </summary>
    private async Task<byte[]?> HandshakeAsync(Socket socket, GatewayAdmission.Slot admission, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxHeadBytes);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(options.Value.HelloTimeoutSeconds));
            int count = 0, headEnd;
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(count, MaxHeadBytes - count), SocketFlags.None, timeout.Token);
                if (n == 0)
                {
                    return null;
                }

                // Look for the blank line from a little before the new bytes: it may straddle two reads.
                var from = Math.Max(0, count - (HeadEnd.Length - 1));
                var checkedUpTo = count;
                count += n;
                var at = buffer.AsSpan(from, count - from).IndexOf(HeadEnd);

                // A line ended by LF alone, or a NUL, is refused now rather than waited on until the timeout (only
                // in the head: bytes after it are the client's first frame).
                if (HasBareLineFeedOrNul(buffer.AsSpan(0, at >= 0 ? from + at + 2 : count), checkedUpTo))
                {
                    await RespondAsync(socket, 400, "Bad Request", Protocol.ErrorCodes.Invalid, "a request head has lines ended by CR LF and no NUL");
                    return null;
                }

                if (at >= 0)
                {
                    headEnd = from + at;
                    break;
                }

                if (count == MaxHeadBytes)
                {
                    await RespondAsync(socket, 431, "Request Header Fields Too Large", Protocol.ErrorCodes.TooLarge, $"request head over {MaxHeadBytes} bytes");
                    return null;
                }
            }

            var head = Encoding.Latin1.GetString(buffer, 0, headEnd);
            var (status, key) = Parse(head);
            switch (status)
            {
                case 101 when !origins.Allows(HeaderValue(head, "Origin"), HeaderValue(head, "Host")):
                    await RespondAsync(socket, 403, "Forbidden", Protocol.ErrorCodes.Forbidden, Web.OriginPolicy.RefusedMessage);
                    return null;
                case 101 when !admission.Upgrade():
                    await RespondAsync(socket, 503, "Service Unavailable", Protocol.ErrorCodes.Unavailable, "too many WebSockets open (Kestrel:Limits:MaxConcurrentUpgradedConnections); try again later");
                    return null;
                case 101:
                    break;
                case 426:
                    await RespondAsync(socket, 426, "Upgrade Required", Protocol.ErrorCodes.Invalid, "WebSocket version 13 only", "Sec-WebSocket-Version: 13\r\n");
                    return null;
                default:
                    await RespondAsync(socket, 400, "Bad Request", Protocol.ErrorCodes.Invalid, "this endpoint speaks WebSocket only");
                    return null;
            }

            var response = Encoding.ASCII.GetBytes(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
                $"Sec-WebSocket-Accept: {Protocol.WebSocketAccept.For(key!)}\r\n\r\n");
            await GatewaySocketStream.SendAllAsync(socket, response, timeout.Token);
            return buffer.AsSpan(headEnd + HeadEnd.Length, count - headEnd - HeadEnd.Length).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// 101 and the client's key when the head is a valid WebSocket upgrade (RFC 6455 §4.2.1); 426 for another
    /// WebSocket version; 400 for anything else. As strict as Kestrel's parser: the request line exactly
    /// <c>GET target HTTP/1.1</c>, header names tokens, values visible ASCII, spaces and tabs only (no NUL, no CR or
    /// LF, no bytes above 127), and Host, Sec-WebSocket-Key, Sec-WebSocket-Version and Content-Length at most once.
    /// </summary>
    internal static (int Status, string? Key) Parse(string head)
    {
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || requestLine[0] != "GET" || requestLine[2] != "HTTP/1.1" || !IsTarget(requestLine[1]))
        {
            return (400, null);
        }

        string? upgrade = null, connection = null, version = null, key = null;
        int hosts = 0, versions = 0, keys = 0, lengths = 0;
        var body = false;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !IsToken(line.AsSpan(0, colon)) || !IsFieldValue(line.AsSpan(colon + 1)))
            {
                return (400, null); // no name, a name that is not a token (whitespace, a folded line), or a bad value
            }

            var name = line.AsSpan(0, colon);
            var value = line[(colon + 1)..].Trim(HeaderSpace);
            if (name.Equals("Host", StringComparison.OrdinalIgnoreCase))
            {
                hosts++;
            }
            else if (name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))
            {
                upgrade = upgrade is null ? value : upgrade + "," + value;
            }
            else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
            {
                connection = connection is null ? value : connection + "," + value;
            }
            else if (name.Equals("Sec-WebSocket-Version", StringComparison.OrdinalIgnoreCase))
            {
                versions++;
                version = value;
            }
            else if (name.Equals("Sec-WebSocket-Key", StringComparison.OrdinalIgnoreCase))
            {
                keys++;
                key = value;
            }
            else if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                lengths++;
                body |= value != "0";
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                body = true;
            }
        }

        var isUpgrade = hosts == 1 && versions == 1 && keys == 1 && lengths <= 1 && !body
            && upgrade is not null && HasToken(upgrade, "websocket")
            && connection is not null && HasToken(connection, "upgrade")
            && IsValidKey(key!);
        if (!isUpgrade)
        {
            return (400, null);
        }

        return version == "13" ? (101, key) : (426, null);
    }

    /// <summary>A header's value in a head <see cref="Parse"/> accepted (the first, if given twice), or null.</summary>
    internal static string? HeaderValue(string head, string name)
    {
        foreach (var line in head.Split("\r\n").AsSpan(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && line.AsSpan(0, colon).Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                return line[(colon + 1)..].Trim(HeaderSpace);
            }
        }

        return null;
    }

    /// <summary>Whether the bytes from <paramref name="from"/> on hold an LF not after a CR, or a NUL.</summary>
    internal static bool HasBareLineFeedOrNul(ReadOnlySpan<byte> head, int from)
    {
        for (var i = from; i < head.Length; i++)
        {
            if (head[i] == 0 || (head[i] == (byte)'\n' && (i == 0 || head[i - 1] != (byte)'\r')))
            {
                return true;
            }
        }

        return false;
    }

    private static readonly char[] HeaderSpace = [' ', '\t'];

    /// <summary>The gateway's path, then nothing or a query; visible ASCII only.</summary>
    private static bool IsTarget(string target)
    {
        const string path = "/v1/ws";
        if (!target.StartsWith(path, StringComparison.Ordinal) || (target.Length > path.Length && target[path.Length] != '?'))
        {
            return false;
        }

        foreach (var c in target)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>RFC 9110 token: the characters a header name may have.</summary>
    private static bool IsToken(ReadOnlySpan<char> name)
    {
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
            {
                return false;
            }
        }

        return name.Length > 0;
    }

    /// <summary>A header value: visible ASCII, spaces and tabs; no control characters (NUL, a lone CR or LF) and no bytes above 127.</summary>
    private static bool IsFieldValue(ReadOnlySpan<char> value)
    {
        foreach (var c in value)
        {
            if (c != '\t' && c is < ' ' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    private static bool HasToken(string list, string token) =>
        list.Split(',').Any(t => t.Trim().Equals(token, StringComparison.OrdinalIgnoreCase));

    private static bool IsValidKey(string key)
    {
        Span<byte> decoded = stackalloc byte[18];
        return Convert.TryFromBase64String(key, decoded, out var written) && written == 16;
    }

    private static async Task RespondAsync(Socket socket, int status, string reason, string code, string message, string extraHeaders = "")
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new Protocol.ErrorBody(code, message), Protocol.SwitchboardJsonContext.Default.ErrorBody);
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {body.Length}\r\n" +
            $"Connection: close\r\n{extraHeaders}\r\n");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await GatewaySocketStream.SendAllAsync(socket, head, timeout.Token);
        await GatewaySocketStream.SendAllAsync(socket, body, timeout.Token);
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
