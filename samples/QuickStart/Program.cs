using Switchboard.Client;

// Two users, carol and dave, and one message between them. Run it as often as you like: each run makes new users.
// The server: the first argument, else $SWITCHBOARD_URL, else http://127.0.0.1:5080.
var url = new Uri(args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("SWITCHBOARD_URL") ?? "http://127.0.0.1:5080");
var run = Guid.NewGuid().ToString("N")[..6];
var (carol, dave) = ($"carol{run}", $"dave{run}");
await SwitchboardClient.RegisterAsync(url, carol, "correct horse");
await SwitchboardClient.RegisterAsync(url, dave, "battery staple");
var laptop = await SwitchboardClient.LinkDeviceAsync(url, carol, "correct horse", "laptop");   // a token per device
var phone = await SwitchboardClient.LinkDeviceAsync(url, dave, "battery staple", "phone");

await using var carolClient = new SwitchboardClient(url, laptop.Token);   // reconnects by itself, resends until acked
await using var daveClient = new SwitchboardClient(url, phone.Token);
await carolClient.ConnectAsync();
await daveClient.ConnectAsync();

// Read events all the time, from the start: the connection waits for its reader, so an unread client stalls.
using var stop = new CancellationTokenSource();
var received = new TaskCompletionSource();
var daveReads = Task.Run(async () =>
{
    try
    {
        await foreach (var e in daveClient.ReadEventsAsync(stop.Token))   // once and in order per conversation
        {
            if (e is MessageReceived { Message: var m })
            {
                Console.WriteLine($"dave got #{m.Seq} from {m.From}: {m.Body}");
                await daveClient.MarkReadAsync(m.Conv, m.Seq);            // carol sees it read
                received.TrySetResult();
            }
        }
    }
    catch (OperationCanceledException)
    {
        // stopped
    }
});
var carolReads = Task.Run(async () =>
{
    try
    {
        await foreach (var e in carolClient.ReadEventsAsync(stop.Token))
        {
            if (e is ReceiptReceived { Receipt: var r })
            {
                Console.WriteLine($"carol sees {r.Kind} up to #{r.Seq} by {r.User}");
            }
        }
    }
    catch (OperationCanceledException)
    {
        // stopped
    }
});

var conv = SwitchboardClient.DirectConversation(carol, dave);
var ack = await carolClient.SendTextAsync(conv, "hello dave");          // completes once the server has it on disk
Console.WriteLine($"carol's message is stored as #{ack.Seq}");
await received.Task.WaitAsync(TimeSpan.FromSeconds(30));

var page = await carolClient.GetHistoryAsync(conv);                     // newest first, a page at a time
Console.WriteLine($"history: {string.Join(" | ", page.Messages.Select(m => $"#{m.Seq} {m.From}: {m.Body}"))}");

await stop.CancelAsync();                                               // stop reading, then the clients are disposed
await Task.WhenAll(daveReads, carolReads);
