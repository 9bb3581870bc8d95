using System.CommandLine;
using Switchboard.Cli.Bench;

var url = new Option<string>("--url") { Description = "Server base URL", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
var pairs = new Option<int>("--pairs") { Description = "Sender→receiver pairs, each in its own direct conversation", DefaultValueFactory = _ => 1 };
var window = new Option<int>("--window") { Description = "Sends in flight per sender (pipelining depth)", DefaultValueFactory = _ => 256 };
var duration = new Option<int>("--duration") { Description = "Measured seconds", DefaultValueFactory = _ => 10 };
var warmup = new Option<int>("--warmup") { Description = "Seconds of load before measuring", DefaultValueFactory = _ => 2 };
var body = new Option<int>("--body") { Description = "Body size in bytes", DefaultValueFactory = _ => 100 };
var json = new Option<bool>("--json") { Description = "Print the result as one JSON object" };

var direct = new Command("direct", "1:1 load: pipelined sends through persist-before-ack; acked/s, ack and end-to-end latency, loss")
{
    url, pairs, window, duration, warmup, body, json,
};
direct.SetAction(async (parse, cancellationToken) =>
{
    if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
    {
        await Console.Error.WriteLineAsync("--url must be an absolute http:// or https:// URL");
        return 2;
    }

    var options = new DirectOptions(
        baseUrl,
        Math.Max(1, parse.GetValue(pairs)),
        Math.Max(1, parse.GetValue(window)),
        TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(duration), 1, 3600)),
        TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(warmup), 0, 600)),
        Math.Clamp(parse.GetValue(body), 1, 16 * 1024),
        parse.GetValue(json));
    return await new DirectBench(options).RunAsync(cancellationToken);
});

var members = new Option<int>("--members") { Description = "Group size, all members online", DefaultValueFactory = _ => 1024 };
var posts = new Option<int>("--posts") { Description = "Messages the first member posts", DefaultValueFactory = _ => 100 };
var warmupPosts = new Option<int>("--warmup-posts") { Description = "Posts sent first and not measured (lets the JIT settle)", DefaultValueFactory = _ => 20 };
var interval = new Option<int>("--interval") { Description = "Milliseconds between posts; 0 waits for each post to complete", DefaultValueFactory = _ => 0 };
var noRecv = new Option<bool>("--no-recv") { Description = "Members do not acknowledge with recv" };
var parallel = new Option<int>("--parallel") { Description = "Accounts created and sockets opened at once", DefaultValueFactory = _ => 16 };
var groupUrl = new Option<string>("--url") { Description = "Server base URL", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
var groupJson = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
var group = new Command("group", "Group fanout: completion time until the last member has each post, per-recipient and ack latency")
{
    groupUrl, members, posts, warmupPosts, interval, noRecv, parallel, groupJson,
};
group.SetAction(async (parse, cancellationToken) =>
{
    if (!Uri.TryCreate(parse.GetValue(groupUrl), UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
    {
        await Console.Error.WriteLineAsync("--url must be an absolute http:// or https:// URL");
        return 2;
    }

    var options = new GroupOptions(baseUrl, Math.Clamp(parse.GetValue(members), 2, 100_000), Math.Clamp(parse.GetValue(posts), 1, 1_000_000),
        Math.Clamp(parse.GetValue(warmupPosts), 0, 1_000_000), Math.Clamp(parse.GetValue(interval), 0, 60_000), !parse.GetValue(noRecv), Math.Clamp(parse.GetValue(parallel), 1, 256), parse.GetValue(groupJson));
    return await new GroupBench(options).RunAsync(cancellationToken);
});

var clients = new Option<int>("--clients") { Description = "Sockets, each pinging as soon as its last pong arrives", DefaultValueFactory = _ => 1000 };
var hbDuration = new Option<int>("--duration") { Description = "Measured seconds", DefaultValueFactory = _ => 10 };
var hbParallel = new Option<int>("--parallel") { Description = "Accounts created and sockets opened at once", DefaultValueFactory = _ => 16 };
var hbUrl = new Option<string>("--url") { Description = "Server base URL", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
var hbJson = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
var heartbeats = new Command("heartbeats", "Presence write load: heartbeats per second one node absorbs")
{
    hbUrl, clients, hbDuration, hbParallel, hbJson,
};
heartbeats.SetAction(async (parse, cancellationToken) =>
{
    if (!Uri.TryCreate(parse.GetValue(hbUrl), UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
    {
        await Console.Error.WriteLineAsync("--url must be an absolute http:// or https:// URL");
        return 2;
    }

    var options = new HeartbeatOptions(baseUrl, Math.Clamp(parse.GetValue(clients), 1, 100_000), TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(hbDuration), 1, 3600)),
        Math.Clamp(parse.GetValue(hbParallel), 1, 256), parse.GetValue(hbJson));
    return await new HeartbeatBench(options).RunAsync(cancellationToken);
});

var bench = new Command("bench", "Load generator: measures a running server") { direct, group, heartbeats };
var root = new RootCommand("switchboard: client, admin and load generator for a Switchboard server") { bench };
return await root.Parse(args).InvokeAsync();
