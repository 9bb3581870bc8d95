using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Switchboard.Tests;

/// <summary>A raw protocol client over a real <see cref="ClientWebSocket"/>; every wait has a timeout.</summary>
public sealed class TestClient : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private readonly ClientWebSocket _socket;
    private readonly Channel<JsonElement> _frames = Channel.CreateUnbounded<JsonElement>();
    private readonly TaskCompletionSource<int?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();

    private TestClient(ClientWebSocket socket, string user, int device, string token)
    {
        _socket = socket;
        User = user;
        Device = device;
        Token = token;
        _ = ReceiveLoopAsync();
    }

    public string User { get; }
    public int Device { get; }
    public string Token { get; }

    /// <summary>Close code the server sent, once the socket is closed (null for an abrupt end).</summary>
    public Task<int?> Closed => _closed.Task;

    public static async Task<TestClient> OpenAsync(TestServer server, string user = "", int device = 0, string token = "")
    {
        var socket = new ClientWebSocket();
        socket.Options.KeepAliveInterval = TimeSpan.Zero;
        using var cts = new CancellationTokenSource(Timeout);
        await socket.ConnectAsync(server.WebSocketUri, cts.Token);
        return new TestClient(socket, user, device, token);
    }

    public static async Task<TestClient> ConnectAsync(TestServer server, string user, int device, string token)
    {
        var client = await OpenAsync(server, user, device, token);
        await client.SendAsync(new { t = "hello", v = 1, token });
        var welcome = await client.ExpectAsync("welcome");
        Assert.Equal(user, welcome.GetProperty("user").GetString());
        Assert.Equal(device, welcome.GetProperty("device").GetInt32());
        return client;
    }

    public Task SendAsync(object frame) => SendRawAsync(JsonSerializer.Serialize(frame));

    public async Task SendRawAsync(string text)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cts.Token);
    }

    public async Task SendBinaryAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await _socket.SendAsync(bytes, WebSocketMessageType.Binary, true, cts.Token);
    }

    /// <summary>Sends a text message and returns its cid.</summary>
    public async Task<string> SendTextAsync(string conv, string body, string? cid = null)
    {
        cid ??= Guid.NewGuid().ToString();
        await SendAsync(new { t = "send", cid, conv, kind = "text", body });
        return cid;
    }

    /// <summary>Sends a text message and waits for its ack.</summary>
    public async Task<JsonElement> SendAckedAsync(string conv, string body, string? cid = null)
    {
        cid = await SendTextAsync(conv, body, cid);
        return await ExpectAsync("ack", f => f.GetProperty("cid").GetString() == cid);
    }

    /// <summary>The next frame, whatever it is.</summary>
    public async Task<JsonElement> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeout);
        try
        {
            return await _frames.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{User}/{Device}: no frame within {(timeout ?? Timeout).TotalSeconds} s");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"{User}/{Device}: socket closed ({Closed.Result}) while waiting for a frame");
        }
    }

    /// <summary>The next frame of type <paramref name="t"/> (matching <paramref name="match"/>); frames before it are skipped.</summary>
    public async Task<JsonElement> ExpectAsync(string t, Func<JsonElement, bool>? match = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Timeout);
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"{User}/{Device}: no '{t}' frame in time");
            }

            var frame = await NextAsync(left);
            if (frame.GetProperty("t").GetString() == t && (match?.Invoke(frame) ?? true))
            {
                return frame;
            }
        }
    }

    /// <summary>Every frame before <c>live</c> (the replay and the receipt state), in order; <c>live</c> itself is consumed.</summary>
    public async Task<List<JsonElement>> UntilLiveAsync()
    {
        var frames = new List<JsonElement>();
        while (true)
        {
            var frame = await NextAsync();
            if (frame.GetProperty("t").GetString() == "live")
            {
                return frames;
            }

            frames.Add(frame);
        }
    }

    /// <summary>The msg frames among <paramref name="frames"/>.</summary>
    public static List<JsonElement> Messages(IEnumerable<JsonElement> frames) =>
        [.. frames.Where(f => f.GetProperty("t").GetString() == "msg")];

    /// <summary>Collects every frame that arrives within <paramref name="quiet"/> of the previous one.</summary>
    public async Task<List<JsonElement>> DrainAsync(TimeSpan? quiet = null)
    {
        var list = new List<JsonElement>();
        while (true)
        {
            try
            {
                list.Add(await NextAsync(quiet ?? TimeSpan.FromMilliseconds(300)));
            }
            catch (TimeoutException)
            {
                return list;
            }
            catch (InvalidOperationException)
            {
                return list;
            }
        }
    }

    public async Task<int?> WaitClosedAsync()
    {
        var done = await Task.WhenAny(Closed, Task.Delay(Timeout));
        Assert.True(done == Closed, $"{User}/{Device}: socket was not closed in time");
        return await Closed;
    }

    public async Task CloseAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
            {
            }
        }
    }

    /// <summary>Drops the TCP connection without a close handshake, like a crashed client.</summary>
    public void Kill() => _socket.Abort();

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[1 << 20];
        try
        {
            while (true)
            {
                var count = 0;
                WebSocketReceiveResult result;
                do
                {
                    result = await _socket.ReceiveAsync(buffer.AsMemory(count).ToArraySegment(), _stop.Token);
                    count += result.Count;
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _closed.TrySetResult((int?)_socket.CloseStatus);
                    return;
                }

                _frames.Writer.TryWrite(JsonDocument.Parse(buffer.AsMemory(0, count)).RootElement.Clone());
            }
        }
        catch (Exception)
        {
            _closed.TrySetResult((int?)_socket.CloseStatus);
        }
        finally
        {
            _frames.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await CloseAsync();
        _stop.Cancel();
        _socket.Dispose();
        _stop.Dispose();
    }
}

internal static class MemoryExtensions2
{
    public static ArraySegment<byte> ToArraySegment(this Memory<byte> memory) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(memory, out var segment) ? segment : throw new InvalidOperationException();
}

public static class Conv
{
    public static string Direct(string a, string b) => Switchboard.Protocol.Names.DirectConversation(a, b);
}
