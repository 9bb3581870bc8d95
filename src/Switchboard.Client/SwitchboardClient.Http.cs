using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Switchboard.Protocol;

namespace Switchboard.Client;

public sealed partial class SwitchboardClient
{
    /// <summary>Creates an account. Throws <see cref="SwitchboardException"/> (<c>invalid</c>, <c>conflict</c>) when refused.</summary>
    public static async Task RegisterAsync(Uri url, string user, string password, HttpMessageHandler? handler = null, CancellationToken cancellationToken = default)
    {
        using var http = NewHttpClient(url, handler);
        using var response = await PostHonouringRetryAsync(http, "/v1/accounts", new RegisterRequest(user, password), SwitchboardJsonContext.Default.RegisterRequest, cancellationToken);
        await EnsureAsync(response, cancellationToken);
    }

    /// <summary>Longest <c>retry_after</c> a sign-up or link waits out by itself; a longer one is thrown (<see cref="SwitchboardException.RetryAfter"/>).</summary>
    private static readonly TimeSpan MaxRetryWait = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Posts, and when the server answers 429 with a short <c>retry_after</c> (its password-hashing queue was full),
    /// waits that long and tries again, up to three times. A long wait (too many logins) is the caller's to show.
    /// </summary>
    private static async Task<HttpResponseMessage> PostHonouringRetryAsync<T>(HttpClient http, string path, T body, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var response = await http.PostAsJsonAsync(path, body, type, cancellationToken);
            if ((int)response.StatusCode != 429 || attempt == 3)
            {
                return response;
            }

            ErrorBody? error = null;
            try
            {
                error = await response.Content.ReadFromJsonAsync(SwitchboardJsonContext.Default.ErrorBody, cancellationToken);
            }
            catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
            {
            }

            if (error?.RetryAfter is not { } ms || TimeSpan.FromMilliseconds(ms) > MaxRetryWait)
            {
                // Read again by EnsureAsync: put the body back.
                response.Content = new StringContent(JsonSerializer.Serialize(error ?? new ErrorBody(ErrorCodes.RateLimited, "rate limited"), SwitchboardJsonContext.Default.ErrorBody), System.Text.Encoding.UTF8, "application/json");
                return response;
            }

            response.Dispose();
            await Task.Delay(TimeSpan.FromMilliseconds(ms + Random.Shared.Next(100)), cancellationToken); // jittered: refused together, not back together
        }
    }

    /// <summary>Links a new device of an account and returns its token (the only time the token is shown).</summary>
    public static async Task<LinkDeviceResponse> LinkDeviceAsync(Uri url, string user, string password, string name, HttpMessageHandler? handler = null, CancellationToken cancellationToken = default)
    {
        using var http = NewHttpClient(url, handler);
        using var response = await PostHonouringRetryAsync(http, "/v1/devices", new LinkDeviceRequest(user, password, name), SwitchboardJsonContext.Default.LinkDeviceRequest, cancellationToken);
        await EnsureAsync(response, cancellationToken);
        return (await response.Content.ReadFromJsonAsync(SwitchboardJsonContext.Default.LinkDeviceResponse, cancellationToken))!;
    }

    /// <summary>
    /// Sends a text message over HTTP, without a socket: for scripts and one-shot commands, so a live session of
    /// the same device is not replaced. Same idempotency (pass the same <paramref name="cid"/> to retry) and the
    /// same promise: it returns once the message is durable. The message also reaches this device's socket, if any.
    /// </summary>
    /// <remarks>With end-to-end encryption on, the text is encrypted unless <paramref name="encrypt"/> is false.</remarks>
    public Task<AckFrame> PostTextAsync(string conv, string body, string? cid = null, long? replyTo = null, bool encrypt = true, CancellationToken cancellationToken = default) =>
        _e2e is not null && encrypt ? PostSealedAsync(conv, body, cid ?? Guid.CreateVersion7().ToString(), replyTo, cancellationToken) : SendAsync(HttpMethod.Post, $"/v1/conversations/{Uri.EscapeDataString(conv)}/messages",
            new ClientFrame { Cid = cid ?? Guid.CreateVersion7().ToString(), Kind = EventKinds.Text, Body = body, ReplyTo = replyTo },
            SwitchboardJsonContext.Default.ClientFrame, SwitchboardJsonContext.Default.AckFrame, cancellationToken);

    /// <summary>Mutes a conversation for every device of this user, until <paramref name="until"/> or until unmuted.</summary>
    public Task MuteAsync(string conv, DateTimeOffset? until = null, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Put, $"/v1/conversations/{Uri.EscapeDataString(conv)}/mute", new MuteRequest(until?.ToUnixTimeMilliseconds()),
            SwitchboardJsonContext.Default.MuteRequest, cancellationToken);

    /// <summary>Unmutes a conversation.</summary>
    public Task UnmuteAsync(string conv, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Delete, $"/v1/conversations/{Uri.EscapeDataString(conv)}/mute", cancellationToken);

    /// <summary>This user's linked devices.</summary>
    public Task<List<DeviceInfo>> GetDevicesAsync(CancellationToken cancellationToken = default) =>
        GetAsync("/v1/devices", SwitchboardJsonContext.Default.ListDeviceInfo, cancellationToken);

    /// <summary>Unlinks a device: its token stops working and its open socket is closed.</summary>
    public Task UnlinkDeviceAsync(int device, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Delete, $"/v1/devices/{device}", cancellationToken);

    /// <summary>The conversations of this user with cursors and unread counts.</summary>
    public Task<List<ConversationInfo>> GetConversationsAsync(CancellationToken cancellationToken = default) =>
        GetAsync("/v1/conversations", SwitchboardJsonContext.Default.ListConversationInfo, cancellationToken);

    /// <summary>A page of history, newest first; pass the lowest seq seen as <paramref name="before"/> for the next page.</summary>
    public Task<HistoryPage> GetHistoryAsync(string conv, long? before = null, int? limit = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (before is { } b)
        {
            query.Add($"before={b}");
        }

        if (limit is { } l)
        {
            query.Add($"limit={l}");
        }

        return GetAsync($"/v1/conversations/{Uri.EscapeDataString(conv)}/messages{(query.Count > 0 ? "?" + string.Join('&', query) : "")}", SwitchboardJsonContext.Default.HistoryPage, cancellationToken);
    }

    /// <summary>Message info: each member's delivered and read cursors (the message reached them when delivered ≥ seq).</summary>
    public Task<List<ReceiptRow>> GetReceiptsAsync(string conv, long seq, CancellationToken cancellationToken = default) =>
        GetAsync($"/v1/conversations/{Uri.EscapeDataString(conv)}/receipts?seq={seq}", SwitchboardJsonContext.Default.ListReceiptRow, cancellationToken);

    /// <summary>A user's presence (you must share a conversation with them).</summary>
    public Task<PresenceInfo> GetPresenceAsync(string user, CancellationToken cancellationToken = default) =>
        GetAsync($"/v1/presence/{Uri.EscapeDataString(user)}", SwitchboardJsonContext.Default.PresenceInfo, cancellationToken);

    /// <summary>Creates a group with this user as its admin.</summary>
    public Task<GroupInfo> CreateGroupAsync(string name, IEnumerable<string> members, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Post, "/v1/groups", new CreateGroupRequest(name, [.. members]), SwitchboardJsonContext.Default.CreateGroupRequest, SwitchboardJsonContext.Default.GroupInfo, cancellationToken);

    /// <summary>A group and its members.</summary>
    public Task<GroupInfo> GetGroupAsync(string conv, CancellationToken cancellationToken = default) =>
        GetAsync($"/v1/groups/{Uri.EscapeDataString(conv)}", SwitchboardJsonContext.Default.GroupInfo, cancellationToken);

    /// <summary>Renames a group (admins).</summary>
    public Task<GroupInfo> RenameGroupAsync(string conv, string name, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Patch, $"/v1/groups/{Uri.EscapeDataString(conv)}", new RenameGroupRequest(name), SwitchboardJsonContext.Default.RenameGroupRequest, SwitchboardJsonContext.Default.GroupInfo, cancellationToken);

    /// <summary>Adds members to a group (admins).</summary>
    public Task<GroupInfo> AddMembersAsync(string conv, IEnumerable<string> users, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Post, $"/v1/groups/{Uri.EscapeDataString(conv)}/members", new AddMembersRequest([.. users]), SwitchboardJsonContext.Default.AddMembersRequest, SwitchboardJsonContext.Default.GroupInfo, cancellationToken);

    /// <summary>Removes a member (admins), or leaves when <paramref name="user"/> is this user.</summary>
    public Task RemoveMemberAsync(string conv, string user, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Delete, $"/v1/groups/{Uri.EscapeDataString(conv)}/members/{Uri.EscapeDataString(user)}", cancellationToken);

    /// <summary>Makes a member an admin or a plain member (admins).</summary>
    public Task<GroupInfo> SetRoleAsync(string conv, string user, string role, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Put, $"/v1/groups/{Uri.EscapeDataString(conv)}/members/{Uri.EscapeDataString(user)}", new RoleRequest(role), SwitchboardJsonContext.Default.RoleRequest, SwitchboardJsonContext.Default.GroupInfo, cancellationToken);

    private async Task<T> GetAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        using var response = await _http.GetAsync(Api(path), cancellationToken);
        await EnsureAsync(response, cancellationToken);
        return (await response.Content.ReadFromJsonAsync(type, cancellationToken))!;
    }

    private async Task SendAsync(HttpMethod method, string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, Api(path));
        using var response = await _http.SendAsync(request, cancellationToken);
        await EnsureAsync(response, cancellationToken);
    }

    private async Task SendAsync<TBody>(HttpMethod method, string path, TBody body, JsonTypeInfo<TBody> bodyType, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, Api(path)) { Content = JsonContent.Create(body, bodyType) };
        using var response = await _http.SendAsync(request, cancellationToken);
        await EnsureAsync(response, cancellationToken);
    }

    private async Task<TResult> SendAsync<TBody, TResult>(HttpMethod method, string path, TBody body, JsonTypeInfo<TBody> bodyType, JsonTypeInfo<TResult> resultType, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, Api(path)) { Content = JsonContent.Create(body, bodyType) };
        using var response = await _http.SendAsync(request, cancellationToken);
        await EnsureAsync(response, cancellationToken);
        return (await response.Content.ReadFromJsonAsync(resultType, cancellationToken))!;
    }

    private static async Task EnsureAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        ErrorBody? error = null;
        try
        {
            error = await response.Content.ReadFromJsonAsync(SwitchboardJsonContext.Default.ErrorBody, cancellationToken);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
        {
        }

        // A 5xx without our error body came from something in between (a proxy, a restart): worth a retry.
        var code = error?.Error ?? ((int)response.StatusCode >= 500 ? ErrorCodes.Unavailable : ErrorCodes.Internal);
        throw new SwitchboardException(code, error?.Message ?? $"HTTP {(int)response.StatusCode}")
        {
            Status = (int)response.StatusCode,
            RetryAfter = error?.RetryAfter is { } ms ? TimeSpan.FromMilliseconds(ms) : null,
        };
    }
}
