using System.Net;
using System.Net.Sockets;

namespace Switchboard.Tests;

/// <summary>
/// A TCP proxy on loopback in front of the server, for faults a real network has: cut every connection at once
/// (wherever the bytes are, often mid-frame), or refuse new connections for a while (an outage).
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _target;
    private readonly List<(TcpClient Client, TcpClient Server)> _pairs = [];
    private readonly HashSet<NetworkStream> _silenced = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public FaultProxy(Uri server)
    {
        _target = server.Port;
        _listener.Start();
        _accepting = AcceptLoopAsync();
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

    /// <summary>While true, new connections are closed as soon as they arrive.</summary>
    public bool Refusing { get; set; }

    public int Accepted { get; private set; }

    /// <summary>
    /// Open connections stop carrying bytes (both ways) while TCP stays up: a dead path that neither side is told
    /// about. New connections work normally.
    /// </summary>
    public void SilenceAll()
    {
        lock (_pairs)
        {
            foreach (var (client, server) in _pairs)
            {
                _silenced.Add(client.GetStream());
                _silenced.Add(server.GetStream());
            }
        }
    }

    /// <summary>Drops every open connection with a reset, both ways.</summary>
    public void CutAll()
    {
        lock (_pairs)
        {
            foreach (var (client, server) in _pairs)
            {
                Reset(client);
                Reset(server);
            }

            _pairs.Clear();
        }
    }

    private static void Reset(TcpClient tcp)
    {
        try
        {
            tcp.Client.LingerState = new LingerOption(true, 0); // RST, like a dead network path
            tcp.Close();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (Refusing)
            {
                Reset(client);
                continue;
            }

            Accepted++;
            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _target);
            }
            catch (SocketException)
            {
                Reset(client);
                continue;
            }

            lock (_pairs)
            {
                _pairs.Add((client, server));
            }

            _ = PumpAsync(client.GetStream(), server.GetStream());
            _ = PumpAsync(server.GetStream(), client.GetStream());
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to)
    {
        var buffer = new byte[8192];
        try
        {
            while (true)
            {
                var read = await from.ReadAsync(buffer, _stop.Token);
                if (read == 0)
                {
                    break;
                }

                bool silenced;
                lock (_pairs)
                {
                    silenced = _silenced.Contains(from);
                }

                if (!silenced)
                {
                    await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
        }

        try
        {
            to.Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        CutAll();
        await _accepting;
        _stop.Dispose();
    }
}
