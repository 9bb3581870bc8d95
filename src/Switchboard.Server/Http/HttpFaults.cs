using RocksDbSharp;
using Switchboard.Protocol;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Http;

/// <summary>
/// The first middleware: a call that fails is still answered with a body. A storage fault (a full or read-only
/// disk, a store being reopened) is 503 <c>unavailable</c>, which clients retry; anything else is 500
/// <c>internal</c> with a reference that is also in the log (event 2004). Never an empty 500.
/// </summary>
internal static partial class HttpFaults
{
    public static IApplicationBuilder UseHttpFaults(this IApplicationBuilder app)
    {
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Switchboard.Server.Http");
        return app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (Exception ex) when (IsStorageFault(ex) && !context.Response.HasStarted)
            {
                LogStorageFault(logger, context.Request.Method, context.Request.Path, Innermost(ex).Message);
                await WriteAsync(context, 503, ErrorCodes.Unavailable, "the store cannot be used right now; try again shortly");
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not BadHttpRequestException && !context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
            {
                var reference = Guid.NewGuid().ToString("N")[..12];
                LogFailed(logger, ex, context.Request.Method, context.Request.Path, reference);
                await WriteAsync(context, 500, ErrorCodes.Internal, $"internal error, reference {reference}");
            }
        });
    }

    private static bool IsStorageFault(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is StoreUnavailableException or RocksDbException or DataDirException or Npgsql.NpgsqlException or Storage.Postgres.ShardUnavailableException or PartialCommitException or TimeoutException)
            {
                return true;
            }
        }

        return false;
    }

    private static Exception Innermost(Exception ex)
    {
        while (ex.InnerException is { } inner)
        {
            ex = inner;
        }

        return ex;
    }

    private static Task WriteAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.Clear();
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorBody(code, message), SwitchboardJsonContext.Default.ErrorBody);
    }

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "{Method} {Path} answered 503: the store is unavailable ({Reason})")]
    private static partial void LogStorageFault(ILogger logger, string method, string path, string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "{Method} {Path} failed, reference {Reference}")]
    private static partial void LogFailed(ILogger logger, Exception exception, string method, string path, string reference);
}
