using System.Collections.Concurrent;
using Switchboard.Protocol;
using Switchboard.Server.Accounts;
using Switchboard.Server.Messaging;
using Switchboard.Server.Routing;
using Switchboard.Server.Storage;

namespace Switchboard.Server.Presence;

/// <summary>
/// Online means at least one socket of the user is open on this node; <c>last_seen</c> is written when the last
/// one closes. Watchers (a socket's open chats) get the current state, then a delta on each change.
/// </summary>
internal sealed class PresenceService(ISessionRouter router, IMessageStore store, AccountStore accounts, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<IClient, byte>> _watchers = new(StringComparer.Ordinal);

    public (bool Online, long? LastSeen) Get(string user) =>
        router.Sessions(user).Count > 0 ? (true, null) : (false, accounts.GetLastSeen(user));

    public bool MayWatch(string watcher, string user) => store.SharesConversation(watcher, user);

    public void Watch(IClient client, string[] users)
    {
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var user in users)
        {
            if (!Names.IsValidHandle(user) || !accounts.UserExists(user) || !MayWatch(client.User, user))
            {
                // One answer for unknown and unshared users, so watch cannot probe who exists.
                client.Send(Frames.Error(ErrorCodes.Forbidden, "you share no conversation with this user", user));
                continue;
            }

            wanted.Add(user);
        }

        lock (client.State)
        {
            foreach (var old in client.State.Watching)
            {
                if (!wanted.Contains(old) && _watchers.TryGetValue(old, out var set))
                {
                    set.TryRemove(client, out _);
                }
            }

            client.State.Watching = wanted;
            foreach (var user in wanted)
            {
                _watchers.GetOrAdd(user, _ => new ConcurrentDictionary<IClient, byte>()).TryAdd(client, 0);
            }
        }

        foreach (var user in wanted)
        {
            var (online, lastSeen) = Get(user);
            client.Send(Frames.Serialize(new PresenceFrame(user, online, lastSeen)));
        }
    }

    /// <summary>Called after a socket registered; <paramref name="first"/> when the user was offline before.</summary>
    public void Connected(string user, bool first)
    {
        if (first)
        {
            Notify(user, Frames.Serialize(new PresenceFrame(user, true, null)));
        }
    }

    /// <summary>Called after a socket closed; <paramref name="last"/> when it was the user's last one.</summary>
    public void Disconnected(IClient client, bool last)
    {
        lock (client.State)
        {
            foreach (var user in client.State.Watching)
            {
                if (_watchers.TryGetValue(user, out var set))
                {
                    set.TryRemove(client, out _);
                    if (set.IsEmpty)
                    {
                        _watchers.TryRemove(new KeyValuePair<string, ConcurrentDictionary<IClient, byte>>(user, set));
                    }
                }
            }

            client.State.Watching = [];
        }

        if (last)
        {
            var now = time.GetUtcNow().ToUnixTimeMilliseconds();
            accounts.SetLastSeen(client.User, now);
            Notify(client.User, Frames.Serialize(new PresenceFrame(client.User, false, now)));
        }
    }

    private void Notify(string user, byte[] frame)
    {
        if (_watchers.TryGetValue(user, out var set))
        {
            foreach (var (watcher, _) in set)
            {
                watcher.Send(frame);
            }
        }
    }
}
