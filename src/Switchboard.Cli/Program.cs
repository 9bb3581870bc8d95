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

var bench = new Command("bench", "Load generator: measures a running server") { direct };
var root = new RootCommand("switchboard: client, admin and load generator for a Switchboard server") { bench };
return await root.Parse(args).InvokeAsync();
