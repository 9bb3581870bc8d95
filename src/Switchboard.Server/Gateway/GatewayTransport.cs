using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;

namespace Switchboard.Server.Gateway;

/// <summary>
/// Kestrel's transport for TCP endpoints, with one difference: a connection whose first bytes are
/// <c>GET /v1/ws</c> is served by the gateway straight on its socket (<see cref="GatewayUpgrade"/>), and never
/// becomes an HTTP connection. Everything else (the HTTP API, TLS, any other path) goes to Kestrel as usual,
/// through Kestrel's own socket connection.
/// </summary>
/// <remarks>
/// Why: a WebSocket that Kestrel upgrades lives inside an HTTP request for as long as it is open, so each idle
/// socket keeps the HTTP/1 connection, request, response and header objects, two pipes and a pooled 4 KiB block
/// (about 15 KB measured), and every frame sent goes through a pipe and a hop to Kestrel's I/O thread. A socket the
/// gateway owns holds the socket, the WebSocket framing state and the session (a few KB), and a frame is written
/// with one send call on the thread that has it, which is what group fanout does a thousand times per post.
/// The framing itself is .NET's (<see cref="System.Net.WebSockets.WebSocket.CreateFromStream(Stream, System.Net.WebSockets.WebSocketCreationOptions)"/>);
/// only the opening handshake is ours. <c>Switchboard:Gateway:OwnSockets=false</c> turns this off.
/// </remarks>
internal sealed class GatewayTransportFactory(
    IOptions<SocketTransportOptions> socketOptions,
    IOptions<GatewayOptions> gatewayOptions,
    GatewayUpgrade upgrade,
    IHostApplicationLifetime lifetime,
    IServiceProvider services,
    IOptions<Cluster.ClusterOptions> cluster,
    ILoggerFactory loggers) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly Lazy<Task<HashSet<int>>> _tlsPorts = new(() => TlsPortsAsync(lifetime, services));

    public bool CanBind(EndPoint endpoint) => gatewayOptions.Value.OwnSockets && endpoint is IPEndPoint;

    /// <summary>
    /// The ports Kestrel serves with TLS, known once the server has started: Kestrel lists every endpoint in its
    /// addresses with its scheme, however it was configured (settings, or <c>ListenOptions.UseHttps</c> in code).
    /// The transport cannot see TLS itself (Kestrel adds it above the transport), so a listener waits for this
    /// before it serves anything, and on a TLS port hands every connection to Kestrel untouched: plaintext is never
    /// served on an endpoint meant for TLS.
    /// </summary>
    private static Task<HashSet<int>> TlsPortsAsync(IHostApplicationLifetime lifetime, IServiceProvider services)
    {
        var ports = new TaskCompletionSource<HashSet<int>>(TaskCreationOptions.RunContinuationsAsynchronously);
        lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = services.GetService<Microsoft.AspNetCore.Hosting.Server.IServer>()?.Features
                .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses ?? [];
            ports.TrySetResult([.. addresses
                .Where(a => a.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
                .Select(a => Microsoft.AspNetCore.Http.BindingAddress.Parse(a).Port)]);
        });
        return ports.Task;
    }

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var ip = (IPEndPoint)endpoint;
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(ip);
            socket.Listen(socketOptions.Value.Backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }

        var kestrel = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), loggers.CreateLogger<SocketConnectionContextFactory>());
        var drainWindowMs = cluster.Value.Enabled ? cluster.Value.DrainSeconds * 1000 : 0;
        return ValueTask.FromResult<IConnectionListener>(new GatewayListener(socket, kestrel, upgrade, _tlsPorts.Value, drainWindowMs));
    }
}

/// <summary>One listening socket: accepts, sorts each connection out, and queues Kestrel's for Kestrel.</summary>
internal sealed class GatewayListener : IConnectionListener
{
    private readonly Socket _listen;
    private readonly SocketConnectionContextFactory _kestrel;
    private readonly GatewayUpgrade _upgrade;
    private readonly Channel<ConnectionContext> _forKestrel = Channel.CreateUnbounded<ConnectionContext>(new UnboundedChannelOptions { SingleReader = false });
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _running = 1; // the accept loop's own count, dropped when it ends
    private readonly Task _acceptLoop;
    private readonly Action _done;

    /// <summary>Cancelled when unbound: connections still in their first request give up at once.</summary>
    private readonly CancellationTokenSource _unbound = new();

    /// <summary>Ports served with TLS, once the server has started (see <see cref="GatewayTransportFactory"/>).</summary>
    private readonly Task<HashSet<int>> _tlsPorts;

    /// <summary>Sockets close over this window when the server stops (see <see cref="GatewayServices.DrainWindowMs"/>).</summary>
    private int DrainWindowMs { get; }

    public GatewayListener(Socket listen, SocketConnectionContextFactory kestrel, GatewayUpgrade upgrade, Task<HashSet<int>> tlsPorts, int drainWindowMs)
    {
        DrainWindowMs = drainWindowMs;
        _tlsPorts = tlsPorts;
        _listen = listen;
        _kestrel = kestrel;
        _upgrade = upgrade;
        EndPoint = listen.LocalEndPoint!;
        _done = Done;
        _acceptLoop = Task.Factory.StartNew(AcceptLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public EndPoint EndPoint { get; }

    /// <summary>
    /// Accepts on a thread of its own, with blocking accepts: on the thread pool the accept's continuation queues
    /// behind the handshakes it has just handed out, and in a reconnect storm the kernel's accept queue overflows
    /// while it waits (each dropped handshake costs its client a second of SYN retry).
    /// </summary>
    private void AcceptLoop()
    {
        try
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = _listen.Accept();
                }
                catch (SocketException ex) when (ex.SocketErrorCode is not (SocketError.OperationAborted or SocketError.Interrupted or SocketError.NotSocket or SocketError.InvalidArgument or SocketError.Shutdown))
                {
                    // One failed accept (a connection reset before it was taken, no file handles or buffers left
                    // for a moment) must not stop the listener: note it, let the cause ease, go on.
                    _upgrade.LogAcceptFailed(ex);
                    Thread.Sleep(ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable ? 100 : 1);
                    continue;
                }

                Interlocked.Increment(ref _running);
                ThreadPool.UnsafeQueueUserWorkItem(static state => _ = state.Listener.ServeAsync(state.Socket), (Listener: this, Socket: socket), preferLocal: false);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // unbound
        }
        finally
        {
            _forKestrel.Writer.TryComplete();
            Done();
        }
    }

    private void Done()
    {
        if (Interlocked.Decrement(ref _running) == 0)
        {
            _drained.TrySetResult();
        }
    }

    /// <summary>Peeks at the request line: the gateway's path is served by the gateway, anything else by Kestrel.</summary>
    private async Task ServeAsync(Socket socket)
    {
        var handedOver = false;
        // Counted from accept: a connection that never sends a request, or never a hello, holds a place.
        var admission = _upgrade.Admission.TryEnter((socket.RemoteEndPoint as IPEndPoint)?.Address, owned: true);
        try
        {
            if (admission is null)
            {
                socket.LingerState = new LingerOption(true, 0); // refused: a reset, nothing read
                return;
            }

            socket.NoDelay = true;
            var tls = (await _tlsPorts.WaitAsync(_unbound.Token)).Contains(((IPEndPoint)EndPoint).Port);
            if (tls || !await _upgrade.IsGatewayRequestAsync(socket, _unbound.Token))
            {
                admission.Dispose(); // Kestrel's from here, under Kestrel's own limits
                if (_forKestrel.Reader.Completion.IsCompleted)
                {
                    return; // unbound meanwhile: Kestrel takes no more connections
                }

                var connection = _kestrel.Create(socket);
                handedOver = _forKestrel.Writer.TryWrite(connection);
                if (!handedOver)
                {
                    await connection.DisposeAsync(); // unbound meanwhile
                }

                return;
            }

            if (await _upgrade.AcceptAsync(socket, admission, _unbound.Token) is not { } accepted)
            {
                return;
            }

            // The connection runs on by itself and this method ends, so an idle socket holds no frame of it; the
            // connection disposes its socket and its admission, and reports its end through _done.
            handedOver = true;
            Interlocked.Increment(ref _running);
            _ = _upgrade.RunAsync(accepted.WebSocket, accepted.Stream, admission, _done);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // closed before or during its request; nothing was served
        }
        finally
        {
            if (!handedOver)
            {
                socket.Dispose();
                admission?.Dispose();
            }

            Done();
        }
    }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _forKestrel.Reader.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _unbound.Cancel();
        _listen.Dispose();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _unbound.CancelAsync();
        _listen.Dispose();
        await _acceptLoop;
        // Gateway sockets close themselves when the application stops (4003); wait for them, as Kestrel waits for
        // its requests, so that everything they had acked is committed before the store shuts.
        await _drained.Task.WaitAsync(TimeSpan.FromMilliseconds(10_000 + DrainWindowMs)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        while (_forKestrel.Reader.TryRead(out var unclaimed))
        {
            await unclaimed.DisposeAsync();
        }

        _kestrel.Dispose();
        _unbound.Dispose();
    }
}
