namespace Switchboard.Client;

/// <summary>Settings of a <see cref="SwitchboardClient"/>; every one has a default.</summary>
public sealed record SwitchboardClientOptions
{
    /// <summary>
    /// Where cursors and the outbox are kept. In memory by default; <c>SqliteClientStateStore</c> (package Switchboard.Client.Sqlite) keeps them
    /// on disk so a restarted client resumes where it was, resending what was never acked.
    /// </summary>
    public IClientStateStore? State { get; init; }

    /// <summary>
    /// Other nodes of the same cluster. When the server cannot be reached, or closes the socket because it is
    /// draining (4003), the client connects to the next one in turn (HTTP calls follow), after the wait the server
    /// asked for or its backoff.
    /// </summary>
    public IReadOnlyList<Uri> OtherServers { get; init; } = [];

    /// <summary>
    /// End-to-end encryption: where this device keeps its keys and sessions. When set, the client publishes its keys
    /// on connect, encrypts every text it sends (Signal's X3DH and Double Ratchet per device, Sender Keys in groups;
    /// docs/e2ee.md) and decrypts what it receives. <c>SqliteE2eeStore</c> (Switchboard.Client.Sqlite) keeps them on disk.
    /// </summary>
    public E2ee.IE2eeStore? E2eeStore { get; init; }

    /// <summary>
    /// Who the token belongs to, when the application knows (it was told when the device was linked). Known otherwise
    /// from the socket's first welcome; with it, a client that never opens a socket can decrypt history.
    /// </summary>
    public Protocol.DeviceAddress? Self { get; init; }

    /// <summary>The clock (signed prekeys are replaced once they are a week old); for tests.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>First reconnect delay bound; each attempt doubles it up to <see cref="ReconnectMaxDelay"/>.</summary>
    public TimeSpan ReconnectBaseDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Largest reconnect delay bound.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a connection attempt (socket and welcome) may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long received events may wait before a cumulative <c>recv</c> tells the server; short enough for a
    /// prompt double tick, long enough to cover a burst with one frame.
    /// </summary>
    public TimeSpan RecvDelay { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Events kept for the reader of <see cref="SwitchboardClient.ReadEventsAsync"/>; beyond it the connection waits.</summary>
    public int EventBuffer { get; init; } = 10_000;

    /// <summary>For tests and custom transports: the HTTP handler used for API calls.</summary>
    public HttpMessageHandler? HttpHandler { get; init; }
}
