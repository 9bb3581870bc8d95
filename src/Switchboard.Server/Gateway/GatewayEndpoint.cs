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

            using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { KeepAliveInterval = TimeSpan.Zero });
            await new GatewayConnection(socket, services).RunAsync(lifetime.ApplicationStopping);
            return Results.Empty;
        });
    }
}
