using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using HdrHistogram;

namespace Switchboard.Bench;

/// <summary>Settings of the <c>preauth</c> workload.</summary>
internal sealed record PreAuthOptions(BenchTarget Target, int Sockets, int Bytes, TimeSpan Hold, WatchedProcesses Servers, bool Json);

/// <summary>
/// Sockets that never authenticate: each upgrades to a WebSocket and sends most of one large text frame (its
/// header announces <c>--bytes</c>, all but the last byte follow), never a hello, and holds on. Meanwhile a real user
/// connects with its token ten times a second, from an address of its own. Reports how many got in, how many the server refused or closed, the
/// real user's connect latency, and the server's resident memory before, at its highest, and 5 s after the flood.
/// </summary>
internal sealed class PreAuthBench(PreAuthOptions options)
{
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);
    private readonly LongHistogram _connect = Report.Histogram();
    private long _upgraded;
    private long _refused;
    private long _closed;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = options.Target.CreateHttpClients(TimeSpan.FromSeconds(60));
        var (_, token) = await new BenchAccounts(http).CreateAsync("p", 0, cancellationToken);
        await Task.Delay(Settle, cancellationToken);
        var rssStart = options.Servers.RssBytes();
        var rssMax = rssStart ?? 0;

        Console.Error.WriteLine($"{options.Sockets} sockets, each sending {options.Bytes} bytes of one frame and no hello, for {options.Hold.TotalSeconds:0} s…");
        var sockets = new Socket?[options.Sockets];
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var flood = Parallel.ForAsync(0, options.Sockets, new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = stop.Token }, async (i, ct) => sockets[i] = await StallAsync(i, ct));

        // The real user is somewhere else: on a loopback server, its own source address (127.0.0.254), so the
        // per-address bound the flood runs into is not its bound too.
        var userAddress = IPAddress.TryParse(options.Target.WebSocket.Host, out var host) && IPAddress.IsLoopback(host) && host.AddressFamily == AddressFamily.InterNetwork
            ? IPAddress.Parse("127.0.0.254")
            : null;
        var connects = 0;
        var failures = 0;
        var started = Stopwatch.GetTimestamp();
        using (var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100)))
        {
            while (Stopwatch.GetElapsedTime(started) < options.Hold && await timer.WaitForNextTickAsync(cancellationToken))
            {
                if (options.Servers.RssBytes() is { } rss)
                {
                    rssMax = Math.Max(rssMax, rss);
                }

                var t0 = Stopwatch.GetTimestamp();
                try
                {
                    await using var user = await BenchConnection.ConnectAsync(options.Target.WebSocket, token, static _ => { }, cancellationToken, 4096, userAddress, TimeSpan.FromSeconds(30));
                    Report.Record(_connect, Stopwatch.GetTimestamp() - t0);
                    connects++;
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    failures++;
                }
            }
        }

        await stop.CancelAsync();
        try
        {
            await flood;
        }
        catch (OperationCanceledException)
        {
        }

        foreach (var socket in sockets)
        {
            if (socket is not null && socket.Poll(0, SelectMode.SelectRead))
            {
                _closed++; // the server said something, which can only be a close (frame too big, or no hello in time)
            }

            socket?.Dispose();
        }

        await Task.Delay(Settle, cancellationToken);
        var rssAfter = options.Servers.RssBytes();
        var report = new Dictionary<string, object?>
        {
            ["workload"] = "preauth",
            ["sockets"] = options.Sockets,
            ["source_addresses"] = options.Target.SourceAddresses,
            ["frame_bytes"] = options.Bytes,
            ["upgraded"] = _upgraded,
            ["refused"] = _refused,
            ["closed_by_server"] = _closed,
            ["user_connects"] = connects,
            ["user_connect_failures"] = failures,
            ["user_connect_ms"] = Report.Percentiles(_connect),
        };
        if (rssStart is { } start)
        {
            report["server_rss_start_bytes"] = start;
            report["server_rss_max_bytes"] = rssMax;
            report["server_rss_after_bytes"] = rssAfter;
            report["server_rss_growth_max_bytes"] = rssMax - start;
            report["server_rss_growth_after_bytes"] = rssAfter - start;
            if (options.Servers.Pids.Count > 1)
            {
                report["server_rss_after_bytes_per_pid"] = options.Servers.RssPerProcess(1);
            }
        }

        options.Target.AddTo(report);
        Report.Print(report, options.Json);
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Upgrades, then sends a frame header for <c>Bytes</c> and all but one byte of it; null when refused.</summary>
    private async Task<Socket?> StallAsync(int index, CancellationToken cancellationToken)
    {
        var uri = options.Target.WebSocketOf(index); // spread over the nodes, like users
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (options.Target.LocalAddress(index) is { } local)
            {
                socket.Bind(new IPEndPoint(local, 0));
            }

            await socket.ConnectAsync(uri.Host, uri.Port, cancellationToken);
            var head = $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                $"Sec-WebSocket-Key: {Convert.ToBase64String(RandomNumberGenerator.GetBytes(16))}\r\nSec-WebSocket-Version: 13\r\n\r\n";
            await socket.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None, cancellationToken);
            var answer = new byte[512];
            var n = await socket.ReceiveAsync(answer, SocketFlags.None, cancellationToken);
            if (n == 0 || !Encoding.ASCII.GetString(answer, 0, n).StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _refused);
                socket.Dispose();
                return null;
            }

            Interlocked.Increment(ref _upgraded);
            // A masked text frame, its length in the shortest form (RFC 6455 §5.2); the payload is spaces (masked),
            // all but its last byte.
            var lengthBytes = options.Bytes <= 125 ? 0 : options.Bytes <= ushort.MaxValue ? 2 : 8;
            var header = 2 + lengthBytes + 4;
            var frame = new byte[header + options.Bytes - 1];
            frame[0] = 0x81;
            frame[1] = (byte)(0x80 | (lengthBytes == 0 ? options.Bytes : lengthBytes == 2 ? 126 : 127));
            if (lengthBytes == 2)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), (ushort)options.Bytes);
            }
            else if (lengthBytes == 8)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(2), (ulong)options.Bytes);
            }

            var mask = RandomNumberGenerator.GetBytes(4);
            mask.CopyTo(frame, header - 4);
            for (var i = header; i < frame.Length; i++)
            {
                frame[i] = (byte)(' ' ^ mask[(i - header) % 4]);
            }
            try
            {
                await socket.SendAsync(frame, SocketFlags.None, cancellationToken);
            }
            catch (SocketException)
            {
                // closed by the server part way (1009): that is the answer
            }

            return socket;
        }
        catch (SocketException)
        {
            Interlocked.Increment(ref _refused);
            socket.Dispose();
            return null;
        }
    }
}
