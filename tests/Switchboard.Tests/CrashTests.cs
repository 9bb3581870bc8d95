using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Xunit.Abstractions;

namespace Switchboard.Tests;

/// <summary>
/// Persist-before-ack under a real crash: the server runs as its own process, takes a pipelined load, is killed
/// with SIGKILL at a random moment, and restarts on the same data directory. Every acked cid must be in the
/// history exactly once, with the seq it was acked with; seqs have no gaps; a retry of the unacked cids (same
/// cid, as a client does) stores each of them once.
/// </summary>
public sealed class CrashTests(ITestOutputHelper output)
{
    private const int Cycles = 4;
    private const int Senders = 4;

    [Fact]
    public async Task Every_acked_message_survives_SIGKILL_exactly_once_with_its_seq()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "switchboard-crash-" + Guid.NewGuid().ToString("N"));
        var random = new Random();
        var acked = new Dictionary<string, (string Conv, long Seq)>();
        var unacked = new Dictionary<string, string>(); // cid → conv, sent but never acked
        var senders = new List<(string User, string Peer, string Password)>();
        try
        {
            for (var cycle = 0; cycle < Cycles; cycle++)
            {
                await using var server = await ServerProcess.StartAsync(dataDir);
                if (cycle == 0)
                {
                    for (var i = 0; i < Senders; i++)
                    {
                        var user = TestServer.NewUser("c");
                        var peer = TestServer.NewUser("p");
                        await server.RegisterAsync(user);
                        await server.RegisterAsync(peer);
                        senders.Add((user, peer, "correct horse"));
                    }
                }
                else
                {
                    await VerifyAsync(server, senders, acked, unacked, cycle);
                }

                // Load: every sender pipelines sends; the kill comes at a random moment while they run.
                using var loadStop = new CancellationTokenSource();
                var results = new List<Task<(Dictionary<string, (string, long)> Acked, Dictionary<string, string> Sent)>>();
                foreach (var (user, peer, password) in senders)
                {
                    var token = await server.LinkAsync(user, password);
                    results.Add(SendUntilKilledAsync(server.WebSocketUri, token, Conv.Direct(user, peer), loadStop.Token));
                }

                await Task.Delay(random.Next(300, 1500));
                server.Kill();
                loadStop.CancelAfter(TimeSpan.FromSeconds(5));
                foreach (var result in results)
                {
                    var (ackedNow, sentNow) = await result;
                    output.WriteLine($"  sender: {sentNow.Count} sent, {ackedNow.Count} acked");
                    foreach (var (cid, value) in ackedNow)
                    {
                        acked[cid] = value;
                        unacked.Remove(cid);
                    }

                    foreach (var (cid, conv) in sentNow)
                    {
                        if (!ackedNow.ContainsKey(cid))
                        {
                            unacked[cid] = conv;
                        }
                    }
                }

                output.WriteLine($"cycle {cycle}: {acked.Count} acked so far, {unacked.Count} sent without ack when killed");
            }

            await using var last = await ServerProcess.StartAsync(dataDir);
            await VerifyAsync(last, senders, acked, unacked, Cycles);
            Assert.True(acked.Count > 100, $"the load should have acked a fair number of messages, got {acked.Count}");
        }
        finally
        {
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Checks the history against the acks, then retries the unacked cids and checks they land once.</summary>
    private async Task VerifyAsync(ServerProcess server, List<(string User, string Peer, string Password)> senders, Dictionary<string, (string Conv, long Seq)> acked, Dictionary<string, string> unacked, int cycle)
    {
        foreach (var (user, peer, password) in senders)
        {
            var token = await server.LinkAsync(user, password);
            var conv = Conv.Direct(user, peer);
            var history = await server.HistoryAsync(conv, token);

            var seqs = history.Select(m => m.Seq).OrderBy(s => s).ToList();
            Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs); // no gaps, no repeats
            var byCid = history.GroupBy(m => m.Cid).ToDictionary(g => g.Key, g => g.ToList());
            Assert.All(byCid, g => Assert.Single(g.Value)); // no cid stored twice

            foreach (var (cid, (ackConv, ackSeq)) in acked.Where(a => a.Value.Conv == conv))
            {
                Assert.True(byCid.TryGetValue(cid, out var found), $"cycle {cycle}: acked cid {cid} (seq {ackSeq}) is missing after the crash");
                Assert.Equal(ackSeq, found![0].Seq);
            }

            // A client retries what it never saw acked, with the same cid: each must be stored exactly once.
            var retry = unacked.Where(u => u.Value == conv).Select(u => u.Key).ToList();
            if (retry.Count > 0)
            {
                var client = await RawClient.ConnectAsync(server.WebSocketUri, token);
                foreach (var cid in retry)
                {
                    await client.SendAsync(new { t = "send", cid, conv, kind = "text", body = "payload " + cid });
                }

                var got = 0;
                while (got < retry.Count)
                {
                    var frame = await client.NextAsync();
                    if (frame.GetProperty("t").GetString() == "ack")
                    {
                        acked[frame.GetProperty("cid").GetString()!] = (conv, frame.GetProperty("seq").GetInt64());
                        unacked.Remove(frame.GetProperty("cid").GetString()!);
                        got++;
                    }
                }

                await client.DisposeAsync();
                var after = await server.HistoryAsync(conv, token);
                Assert.Equal(after.Count, after.Select(m => m.Cid).Distinct().Count());
                Assert.Equal(Enumerable.Range(1, after.Count).Select(i => (long)i), after.Select(m => m.Seq).OrderBy(s => s));
            }
        }
    }

    private static async Task<(Dictionary<string, (string, long)>, Dictionary<string, string>)> SendUntilKilledAsync(Uri ws, string token, string conv, CancellationToken stop)
    {
        var acked = new Dictionary<string, (string, long)>();
        var sent = new Dictionary<string, string>();
        RawClient? client = null;
        try
        {
            client = await RawClient.ConnectAsync(ws, token);
            var reader = Task.Run(async () =>
            {
                while (true)
                {
                    var frame = await client.NextAsync(stop);
                    if (frame.GetProperty("t").GetString() == "ack")
                    {
                        lock (acked)
                        {
                            acked[frame.GetProperty("cid").GetString()!] = (frame.GetProperty("conv").GetString()!, frame.GetProperty("seq").GetInt64());
                        }
                    }
                }
            }, stop);

            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                var cid = Guid.NewGuid().ToString();
                lock (acked)
                {
                    sent[cid] = conv;
                }

                await client.SendAsync(new { t = "send", cid, conv, kind = "text", body = "payload " + cid }, stop);
                if (++i % 64 == 0)
                {
                    await Task.Delay(1, stop); // pipelined, but leave the writer room to commit
                }
            }

            await reader;
        }
        catch (Exception)
        {
            // the server was killed: whatever was acked so far is what we hold it to
        }
        finally
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }
        }

        lock (acked)
        {
            return (new Dictionary<string, (string, long)>(acked), new Dictionary<string, string>(sent));
        }
    }
}

/// <summary>The server as a separate OS process, so it can be killed with SIGKILL.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;

    private ServerProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        WebSocketUri = new Uri($"ws://127.0.0.1:{port}/v1/ws");
    }

    public HttpClient Http { get; }
    public Uri WebSocketUri { get; }
    public int Port { get; }
    public Uri Url => new($"http://127.0.0.1:{Port}");

    /// <summary>The server as a process of its own; <paramref name="settings"/> over the test defaults, on <paramref name="port"/> or a free one.</summary>
    public static async Task<ServerProcess> StartAsync(string dataDir, IDictionary<string, string?>? settings = null, int? port = null)
    {
        var actualPort = port ?? FreePort();
        var process = Start(dataDir, settings, actualPort);
        var server = new ServerProcess(process, actualPort);
        await server.WaitReadyAsync();
        return server;
    }

    private static Process Start(string dataDir, IDictionary<string, string?>? settings, int port)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
                 {
                     ServerDll(), "--urls", $"http://127.0.0.1:{port}", "--Switchboard:DataDir", dataDir,
                     "--Switchboard:Accounts:Argon2MemoryKiB", "64", "--Switchboard:Accounts:Argon2Passes", "1",
                     "--Switchboard:Abuse:Enabled", "false",
                     "--Switchboard:Messaging:DeviceBurst", "1000000", "--Switchboard:Messaging:UserBurst", "1000000",
                     "--Logging:LogLevel:Default", "Warning",
                 })
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            info.ArgumentList.Add("--" + key);
            info.ArgumentList.Add(value ?? "");
        }

        var process = Process.Start(info)!;
        // Kept beside the data dir, for a failing test to be read afterwards.
        var log = new StreamWriter(dataDir.TrimEnd('/') + ".log", append: true) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { lock (log) { log.WriteLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (log) { log.WriteLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private async Task WaitReadyAsync()
    {
        var server = this;
        var process = _process;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                using var attempt = new CancellationTokenSource(TimeSpan.FromSeconds(2)); // a connect that hangs is tried again
                using var response = await server.Http.GetAsync("/readyz", attempt.Token);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
            {
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"server process did not become ready (exited: {process.HasExited})");
            }

            await Task.Delay(100);
        }
    }

    public async Task RegisterAsync(string user)
    {
        using var response = await Http.PostAsJsonAsync("/v1/accounts", new { user, password = "correct horse" });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    public async Task<string> LinkAsync(string user, string password)
    {
        using var response = await Http.PostAsJsonAsync("/v1/devices", new { user, password, name = "crash" });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString()!;
    }

    public async Task<List<(long Seq, string Cid)>> HistoryAsync(string conv, string token)
    {
        var all = new List<(long, string)>();
        long? before = null;
        while (true)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/conversations/{conv}/messages?limit=100" + (before is { } b ? $"&before={b}" : ""));
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            using var response = await Http.SendAsync(request);
            response.EnsureSuccessStatusCode();
            var page = await response.Content.ReadFromJsonAsync<JsonElement>();
            foreach (var m in page.GetProperty("messages").EnumerateArray())
            {
                all.Add((m.GetProperty("seq").GetInt64(), m.GetProperty("cid").GetString()!));
                before = m.GetProperty("seq").GetInt64();
            }

            if (!page.GetProperty("more").GetBoolean())
            {
                return all;
            }
        }
    }

    public void Kill()
    {
        var pid = _process.Id;
        _process.Kill(); // SIGKILL on Linux: no shutdown hooks, no flush
        _process.WaitForExit(10_000);

        // The leader's exit is seen before every thread is gone, and its sockets (the listening one too) close
        // only then: wait for that, so a new process can take the port.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Directory.Exists($"/proc/{pid}/task") && Directory.EnumerateDirectories($"/proc/{pid}/task").Any() && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
        }
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
        Http.Dispose();
        return ValueTask.CompletedTask;
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The server's dll as built beside this test assembly (artifacts output).</summary>
    internal static string ServerDll()
    {
        var local = Path.Combine(AppContext.BaseDirectory, "Switchboard.Server.dll");
        if (File.Exists(local) && File.Exists(Path.Combine(AppContext.BaseDirectory, "Switchboard.Server.runtimeconfig.json")))
        {
            return local;
        }

        // artifacts/bin/Switchboard.Tests/<config>/ → artifacts/bin/Switchboard.Server/<config>/
        var config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Name;
        var sibling = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "Switchboard.Server", config, "Switchboard.Server.dll"));
        return File.Exists(sibling) ? sibling : throw new FileNotFoundException("Switchboard.Server.dll not found next to the tests", sibling);
    }
}

/// <summary>A minimal protocol client for process tests: hello, send, read frames.</summary>
internal sealed class RawClient : IAsyncDisposable
{
    private readonly System.Net.WebSockets.ClientWebSocket _socket = new();
    private readonly byte[] _buffer = new byte[1 << 16];
    private readonly SemaphoreSlim _sendLock = new(1, 1);

    public static async Task<RawClient> ConnectAsync(Uri uri, string token)
    {
        var client = new RawClient();
        client._socket.Options.KeepAliveInterval = TimeSpan.Zero;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await client._socket.ConnectAsync(uri, cts.Token);
        await client.SendAsync(new { t = "hello", v = 1, token }, cts.Token);
        while ((await client.NextAsync(cts.Token)).GetProperty("t").GetString() != "live")
        {
        }

        return client;
    }

    public async Task SendAsync(object frame, CancellationToken cancellationToken = default)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(frame);
        await _sendLock.WaitAsync(cancellationToken);
        try
        {
            await _socket.SendAsync(bytes, System.Net.WebSockets.WebSocketMessageType.Text, true, cancellationToken);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public async Task<JsonElement> NextAsync(CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(15));
        var count = 0;
        System.Net.WebSockets.ValueWebSocketReceiveResult result;
        do
        {
            result = await _socket.ReceiveAsync(_buffer.AsMemory(count), timeout.Token);
            if (result.MessageType == System.Net.WebSockets.WebSocketMessageType.Close)
            {
                throw new System.Net.WebSockets.WebSocketException("closed");
            }

            count += result.Count;
        }
        while (!result.EndOfMessage);

        return JsonDocument.Parse(_buffer.AsMemory(0, count)).RootElement.Clone();
    }

    public ValueTask DisposeAsync()
    {
        _socket.Abort();
        _socket.Dispose();
        _sendLock.Dispose();
        return ValueTask.CompletedTask;
    }
}
