namespace Switchboard.Server.Gateway;

/// <summary><c>GET /v1/ws</c>: upgrades and runs a <see cref="GatewayConnection"/> for the socket's lifetime.</summary>
internal static class GatewayEndpoint
{
    public static void MapGateway(this IEndpointRouteBuilder app)
    {
        app.Map("/v1/ws", async (HttpContext context, GatewayServices services, IHostApplicationLifetime lifetime) =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                return Results.Json(
                    new Protocol.ErrorBody(Protocol.ErrorCodes.Invalid, "this endpoint speaks WebSocket only"),
                    Protocol.SwitchboardJsonContext.Default.ErrorBody,
                    statusCode: 400);
            }

            // Counted among the unauthenticated until its hello is accepted; the connection gives the place back.
            if (services.Admission.TryEnter(context.Connection.RemoteIpAddress, owned: false) is not { } admission)
            {
                return Results.Json(
                    new Protocol.ErrorBody(Protocol.ErrorCodes.Unavailable, "too many connections waiting to authenticate; try again shortly"),
                    Protocol.SwitchboardJsonContext.Default.ErrorBody,
                    statusCode: 503);
            }

            using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { KeepAliveInterval = TimeSpan.Zero });
            await new GatewayConnection(socket, services, admission).RunAsync(lifetime.ApplicationStopping);
            return Results.Empty;
        });
    }
}
