using System.CommandLine;
using System.Globalization;

namespace Switchboard.Bench;

/// <summary>
/// The <c>bench</c> command and its workloads. Kept apart from Program.cs so the client and admin commands can grow
/// there without touching the load generator.
/// </summary>
internal static class BenchCommands
{
    public static RootCommand Create() => new("switchboard bench: load generator, measures a running server")
    {
        Direct(), Group(), Heartbeats(), Connections(), Reconnect(), Fill(), LoginFlood(), PreAuth(), E2ee(),
    };

    private static Command E2ee()
    {
        var messages = new Option<int>("--messages") { Description = "Messages measured per case", DefaultValueFactory = _ => 2000 };
        var body = new Option<int>("--body") { Description = "Text size in bytes", DefaultValueFactory = _ => 100 };
        var members = new Option<int>("--members") { Description = "Group size for the Sender-Key case", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
        var command = new Command("e2ee", "The client's cost of end-to-end encryption (no server): sessions, direct and group messages, bytes added") { messages, body, members, json };
        command.SetAction(async (parse, _) =>
            await new E2eeBench(new E2eeBenchOptions(Math.Max(10, parse.GetValue(messages)), Math.Max(1, parse.GetValue(body)), Math.Clamp(parse.GetValue(members), 2, 1024), parse.GetValue(json))).RunAsync());
        return command;
    }

    private static Command Fill()
    {
        var common = new CommonOptions();
        var users = new Option<int>("--users") { Description = "Accounts signed up", DefaultValueFactory = _ => 100_000 };
        var conversations = new Option<int>("--conversations") { Description = "Direct conversations opened (one message each)", DefaultValueFactory = _ => 1_000_000 };
        var senders = new Option<int>("--senders") { Description = "Users connected to open them; each talks to distinct others", DefaultValueFactory = _ => 1000 };
        var rate = new Option<int>("--rate") { Description = "Messages per second", DefaultValueFactory = _ => 10_000 };
        var window = new Option<int>("--window") { Description = "Sends in flight per sender", DefaultValueFactory = _ => 32 };
        var serverPid = PidOption("--server-pid", "Server process ids on this machine (one per node): their resident memory, each and summed");
        var parallel = ParallelOption();
        var command = common.Command("fill", "Memory at scale: many users and conversations, then the server's RSS, store memory and cache sizes",
            users, conversations, senders, rate, window, serverPid, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var userCount = Math.Clamp(parse.GetValue(users), 2, 10_000_000);
            var senderCount = Math.Clamp(parse.GetValue(senders), 1, userCount - 1);
            var options = new FillOptions(target, userCount, Math.Clamp(parse.GetValue(conversations), 1, 100_000_000), senderCount,
                Math.Max(1, parse.GetValue(rate)), Math.Max(1, parse.GetValue(window)), Parallel(parse, parallel), Pids(parse, serverPid, descendants: false), parse.GetValue(common.Json));
            return await new FillBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Direct()
    {
        var common = new CommonOptions();
        var users = new Option<int>("--users") { Description = "Users, one device each; every message goes from a random user to one of their contacts", DefaultValueFactory = _ => 1000 };
        var contacts = new Option<string>("--contacts") { Description = "Contacts per user, picked at random, or 'all' (any other user, uniformly)", DefaultValueFactory = _ => "all" };
        var pairs = new Option<int>("--pairs") { Description = "Hot pairs instead of users: sender→receiver pairs, each in its own direct conversation" };
        var recv = new Option<string>("--recv") { Description = "Receipts: 'per-read' (a cumulative recv per conversation for each socket read, as the SDK does) or 'every:N' messages", DefaultValueFactory = _ => "per-read" };
        var readFraction = new Option<double>("--read-fraction") { Description = "Share of deliveries also marked read (0–1)", DefaultValueFactory = _ => 0 };
        var window = new Option<int>("--window") { Description = "Sends in flight per sender (pipelining depth)", DefaultValueFactory = _ => 256 };
        var duration = new Option<int>("--duration") { Description = "Measured seconds", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "Seconds of load before measuring", DefaultValueFactory = _ => 2 };
        var body = new Option<int>("--body") { Description = "Body size in bytes", DefaultValueFactory = _ => 100 };
        var rate = new Option<int>("--rate") { Description = "Offered messages/s over all senders (0: as fast as the windows allow)", DefaultValueFactory = _ => 0 };
        var ramp = new Option<string?>("--ramp") { Description = "FROM:STEP:MAX offered rates; reports the highest whose end-to-end p99 stays within --p99-bound" };
        var bound = new Option<double>("--p99-bound") { Description = "End-to-end p99 bound in ms for --ramp", DefaultValueFactory = _ => 200 };
        var serverPid = PidOption("--server-pid", "Server process ids on this machine (one per node): bytes they wrote to disk (/proc/PID/io), summed, and their resident memory, each and summed");
        var storePid = PidOption("--store-pid", "Store process ids on this machine (PostgreSQL postmasters; NATS, Redis if wanted): bytes they and all their descendants wrote to disk, per message, beside the servers'");
        var seed = new Option<int>("--seed") { Description = "Seed of the random choices (contacts, senders, reads)", DefaultValueFactory = _ => 1 };
        var parallel = ParallelOption();
        var command = common.Command("direct", "1:1 load through persist-before-ack: many users (or hot pairs), receipts as clients send them; acked/s, latency, loss, bytes written per message",
            users, contacts, pairs, recv, readFraction, window, duration, warmup, body, rate, ramp, bound, serverPid, storePid, seed, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            if (RecvPolicy.Parse(parse.GetValue(recv)) is not { } recvPolicy)
            {
                await Console.Error.WriteLineAsync("--recv must be per-read or every:N (N ≥ 1)");
                return 2;
            }

            var contactsText = parse.GetValue(contacts) ?? "all";
            var contactCount = 0;
            if (contactsText != "all" && (!int.TryParse(contactsText, out contactCount) || contactCount < 1))
            {
                await Console.Error.WriteLineAsync("--contacts must be a number ≥ 1 or 'all'");
                return 2;
            }

            int from = 0, step = 0, max = 0;
            if (parse.GetValue(ramp) is { } spec)
            {
                var parts = spec.Split(':');
                if (parts.Length != 3 || !int.TryParse(parts[0], out from) || !int.TryParse(parts[1], out step) || !int.TryParse(parts[2], out max) || from < 1 || step < 1 || max < from)
                {
                    await Console.Error.WriteLineAsync("--ramp must be FROM:STEP:MAX, e.g. 10000:5000:80000");
                    return 2;
                }
            }

            var measured = TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(duration), 1, 3600));
            var warm = TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(warmup), 0, 600));
            var bodyBytes = Math.Clamp(parse.GetValue(body), 1, 16 * 1024);
            var offered = Math.Max(0, parse.GetValue(rate));
            if (parse.GetResult(pairs) is { Implicit: false })
            {
                var options = new DirectOptions(target, Math.Max(1, parse.GetValue(pairs)), Math.Max(1, parse.GetValue(window)), measured, warm, bodyBytes,
                    parse.GetValue(common.Json), offered, recvPolicy);
                return step > 0
                    ? await DirectBench.RampAsync(options, from, step, max, parse.GetValue(bound), cancellationToken)
                    : await new DirectBench(options).RunAsync(cancellationToken);
            }

            var userCount = Math.Clamp(parse.GetValue(users), 2, 1_000_000);
            var usersOptions = new UsersOptions(target, userCount, contactCount, recvPolicy, Math.Clamp(parse.GetValue(readFraction), 0, 1),
                Math.Max(1, parse.GetValue(window)), measured, warm, bodyBytes, offered, Parallel(parse, parallel), Pids(parse, serverPid, descendants: false),
                Pids(parse, storePid, descendants: true), parse.GetValue(seed), parse.GetValue(common.Json));
            return step > 0
                ? await UsersBench.RampAsync(usersOptions, from, step, max, parse.GetValue(bound), cancellationToken)
                : await new UsersBench(usersOptions).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Group()
    {
        var common = new CommonOptions();
        var members = new Option<int>("--members") { Description = "Group size, all members online", DefaultValueFactory = _ => 1024 };
        var posts = new Option<int>("--posts") { Description = "Messages the first member posts", DefaultValueFactory = _ => 100 };
        var warmupPosts = new Option<int>("--warmup-posts") { Description = "Posts sent first and not measured (lets the JIT settle)", DefaultValueFactory = _ => 20 };
        var interval = new Option<int>("--interval") { Description = "Milliseconds between posts; 0 waits for each post to complete", DefaultValueFactory = _ => 0 };
        var noRecv = new Option<bool>("--no-recv") { Description = "Members do not acknowledge with recv" };
        var parallel = ParallelOption();
        var command = common.Command("group", "Group fanout: completion time until the last member has each post, per-recipient and ack latency",
            members, posts, warmupPosts, interval, noRecv, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var options = new GroupOptions(target, Math.Clamp(parse.GetValue(members), 2, 100_000), Math.Clamp(parse.GetValue(posts), 1, 1_000_000),
                Math.Clamp(parse.GetValue(warmupPosts), 0, 1_000_000), Math.Clamp(parse.GetValue(interval), 0, 60_000), !parse.GetValue(noRecv),
                Parallel(parse, parallel), parse.GetValue(common.Json));
            return await new GroupBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Heartbeats()
    {
        var common = new CommonOptions();
        var clients = new Option<int>("--clients") { Description = "Sockets, each pinging as soon as its last pong arrives", DefaultValueFactory = _ => 1000 };
        var duration = new Option<int>("--duration") { Description = "Measured seconds", DefaultValueFactory = _ => 10 };
        var parallel = ParallelOption();
        var command = common.Command("heartbeats", "Presence write load: heartbeats per second one node absorbs", clients, duration, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var options = new HeartbeatOptions(target, Math.Clamp(parse.GetValue(clients), 1, 100_000), TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(duration), 1, 3600)),
                Parallel(parse, parallel), parse.GetValue(common.Json));
            return await new HeartbeatBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Connections()
    {
        var common = new CommonOptions();
        var clients = new Option<int>("--clients") { Description = "Idle authenticated sockets to open (one account each)", DefaultValueFactory = _ => 1000 };
        var serverPid = PidOption("--server-pid", "Server process ids on this machine (one per node): their resident memory (summed) per connection, from /proc");
        var hold = new Option<int>("--hold") { Description = "Seconds to keep the sockets open (pinging each heartbeat) before closing them", DefaultValueFactory = _ => 5 };
        var parallel = ParallelOption();
        var command = common.Command("connections", "Idle connections: connect rate and latency, server memory per connection", clients, serverPid, hold, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var options = new ConnectionsOptions(target, Math.Clamp(parse.GetValue(clients), 1, 1_000_000), Pids(parse, serverPid, descendants: false),
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(hold), 0, 86_400)), Parallel(parse, parallel), parse.GetValue(common.Json));
            return await new ConnectionsBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command LoginFlood()
    {
        var common = new CommonOptions();
        var attackers = new Option<int>("--attackers") { Description = "Wrong-password logins in flight at once, each sent again as soon as it is answered", DefaultValueFactory = _ => 200 };
        var against = new Option<string>("--against") { Description = "'account' (one real account) or 'random' (random user names)", DefaultValueFactory = _ => "account" };
        var duration = new Option<int>("--duration") { Description = "Seconds of flood", DefaultValueFactory = _ => 20 };
        var connects = new Option<double>("--connects-per-second") { Description = "WebSocket connects per second of the real user, measured", DefaultValueFactory = _ => 10 };
        var serverPid = PidOption("--server-pid", "Server process ids on this machine (one per node): their resident memory (summed) over the run");
        var command = common.Command("login-flood", "Wrong-password flood: a real user's connect latency and the server's memory while it lasts",
            attackers, against, duration, connects, serverPid);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            if (parse.GetValue(against) is not ("account" or "random"))
            {
                Console.Error.WriteLine("--against must be 'account' or 'random'");
                return 2;
            }

            var options = new LoginFloodOptions(target, Math.Clamp(parse.GetValue(attackers), 1, 10_000), parse.GetValue(against) == "random",
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(duration), 1, 3600)), Math.Clamp(parse.GetValue(connects), 0.1, 1000), Pids(parse, serverPid, descendants: false), parse.GetValue(common.Json));
            return await new LoginFloodBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command PreAuth()
    {
        var common = new CommonOptions();
        var sockets = new Option<int>("--sockets") { Description = "Sockets that upgrade and never say hello", DefaultValueFactory = _ => 2000 };
        var bytes = new Option<int>("--bytes") { Description = "Length of the one frame each sends (all but its last byte)", DefaultValueFactory = _ => 65_000 };
        var hold = new Option<int>("--hold") { Description = "Seconds to hold them, measuring a real user's connects", DefaultValueFactory = _ => 20 };
        var serverPid = PidOption("--server-pid", "Server process ids on this machine (one per node): their resident memory (summed) over the run");
        var command = common.Command("preauth", "Unauthenticated sockets: how many get in, a real user's connect latency, and server memory while they hold on",
            sockets, bytes, hold, serverPid);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var options = new PreAuthOptions(target, Math.Clamp(parse.GetValue(sockets), 1, 100_000), Math.Clamp(parse.GetValue(bytes), 2, 16 << 20),
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(hold), 1, 3600)), Pids(parse, serverPid, descendants: false), parse.GetValue(common.Json));
            return await new PreAuthBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Reconnect()
    {
        var common = new CommonOptions();
        var clients = new Option<int>("--clients") { Description = "Users with one device each that drop and reconnect together", DefaultValueFactory = _ => 1000 };
        var messages = new Option<int>("--messages") { Description = "Messages each user gets while away", DefaultValueFactory = _ => 5 };
        var timeout = new Option<int>("--timeout") { Description = "Seconds the sending, and then the reconnecting, may each take before the rest counts as failed", DefaultValueFactory = _ => 60 };
        var parallel = ParallelOption();
        var command = common.Command("reconnect", "Reconnect storm: all clients drop, miss messages, come back at once; time to live and caught up, loss, duplicates",
            clients, messages, timeout, parallel);
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (common.Target(parse) is not { } target)
            {
                return 2;
            }

            var options = new ReconnectOptions(target, Math.Clamp(parse.GetValue(clients), 1, 1_000_000), Math.Clamp(parse.GetValue(messages), 1, 10_000),
                TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(timeout), 1, 3600)), Parallel(parse, parallel), parse.GetValue(common.Json));
            return await new ReconnectBench(options).RunAsync(cancellationToken);
        });
        return command;
    }

    /// <summary>A list of process ids: the option repeated, or ids separated by commas, or both; checked at parse time.</summary>
    private static Option<string[]> PidOption(string name, string description)
    {
        var option = new Option<string[]>(name) { Description = description + " (repeat, or PID,PID,…)" };
        option.Validators.Add(result =>
        {
            foreach (var item in SplitList(result.GetValueOrDefault<string[]>()))
            {
                if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid < 1)
                {
                    result.AddError($"{name}: '{item}' is not a process id");
                    return;
                }
            }
        });
        return option;
    }

    /// <summary>
    /// The process ids of a <see cref="PidOption"/>, duplicates dropped; with <paramref name="descendants"/> their
    /// children count too. Ids that are not numbers were refused at parse time.
    /// </summary>
    private static WatchedProcesses Pids(ParseResult parse, Option<string[]> option, bool descendants)
    {
        var pids = new List<int>();
        foreach (var item in SplitList(parse.GetValue(option)))
        {
            var pid = int.Parse(item, NumberStyles.None, CultureInfo.InvariantCulture);
            if (!pids.Contains(pid))
            {
                pids.Add(pid);
            }
        }

        return pids.Count == 0 ? WatchedProcesses.None : new WatchedProcesses(pids, descendants);
    }

    /// <summary>The items of a repeatable option whose values may also be comma lists: trimmed, empty ones dropped.</summary>
    private static List<string> SplitList(string[]? values)
    {
        var items = new List<string>();
        foreach (var value in values ?? [])
        {
            foreach (var item in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                items.Add(item);
            }
        }

        return items;
    }

    private static Option<int> ParallelOption() =>
        new("--parallel") { Description = "Accounts created and sockets opened at once", DefaultValueFactory = _ => 16 };

    private static int Parallel(ParseResult parse, Option<int> parallel) => Math.Clamp(parse.GetValue(parallel), 1, 1024);

    /// <summary>
    /// The options every workload has: where the server is, how its sockets are spread, how to print. A fresh set
    /// per command, so no option instance has two parents.
    /// </summary>
    private sealed class CommonOptions
    {
        private const string DefaultUrl = "http://127.0.0.1:5080";

        private readonly Option<string[]> _url = new("--url")
        {
            Description = $"Server base URL ({DefaultUrl} without it); for a cluster, one per node (repeat, or URL,URL,…): user i signs up, logs in and connects on node i mod N",
        };

        private readonly Option<string?> _nodesFile = new("--nodes-file")
        {
            Description = "File with one node base URL per line (blank lines and # comments skipped), such as DIR/nodes of scripts/cluster.sh; after any --url",
        };

        private readonly Option<int> _sourceAddresses = new("--source-addresses")
        {
            Description = "Spread sockets over source addresses 127.0.0.1 … 127.0.0.N (a loopback server only), for more than ~28,000 sockets to one port",
            DefaultValueFactory = _ => 1,
        };

        public Option<bool> Json { get; } = new("--json") { Description = "Print the result as one JSON object" };

        /// <summary>A workload command with the common options first, then its own.</summary>
        public Command Command(string name, string description, params Option[] options)
        {
            var command = new Command(name, description) { _url, _nodesFile, _sourceAddresses };
            foreach (var option in options)
            {
                command.Options.Add(option);
            }

            command.Options.Add(Json);
            return command;
        }

        /// <summary>The checked target, or null after telling the user what is wrong.</summary>
        public BenchTarget? Target(ParseResult parse)
        {
            var urls = SplitList(parse.GetValue(_url));
            string? error = null;
            if (parse.GetValue(_nodesFile) is { } path && !TryReadNodes(path, urls, out error))
            {
                Console.Error.WriteLine(error);
                return null;
            }

            if (urls.Count == 0 && parse.GetValue(_nodesFile) is null)
            {
                urls.Add(DefaultUrl);
            }

            var target = BenchTarget.Create(urls, parse.GetValue(_sourceAddresses), out error);
            if (target is null)
            {
                Console.Error.WriteLine(error);
            }

            return target;
        }

        /// <summary>Appends the URLs of a nodes file to <paramref name="urls"/>; false with a message when it cannot be read or names none.</summary>
        private static bool TryReadNodes(string path, List<string> urls, out string? error)
        {
            error = null;
            string[] lines;
            try
            {
                lines = File.ReadAllLines(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                error = $"--nodes-file {path}: {ex.Message}";
                return false;
            }

            var found = 0;
            foreach (var line in lines)
            {
                var url = line.Trim();
                if (url.Length > 0 && !url.StartsWith('#'))
                {
                    urls.Add(url);
                    found++;
                }
            }

            if (found == 0)
            {
                error = $"--nodes-file {path}: no URL in it";
                return false;
            }

            return true;
        }
    }
}
