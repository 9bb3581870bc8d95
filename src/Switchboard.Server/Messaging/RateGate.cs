namespace Switchboard.Server.Messaging;

/// <summary>
/// A token bucket. Only the sequencer calls <see cref="TryTake"/>, one command at a time, so it needs
/// no lock.
/// </summary>
internal sealed class TokenBucket(int burst, int perSecond)
{
    private double _tokens = burst;
    private long _lastMs;

    public long TryTake(long nowMs)
    {
        if (_lastMs != 0)
        {
            _tokens = Math.Min(burst, _tokens + ((nowMs - _lastMs) * perSecond / 1000.0));
        }

        _lastMs = nowMs;
        if (_tokens >= 1)
        {
            _tokens -= 1;
            return 0;
        }

        return Math.Max(1, (long)Math.Ceiling((1 - _tokens) * 1000 / perSecond));
    }
}

/// <summary>A device's bucket and its user's shared bucket; a send needs a token from both.</summary>
internal sealed class RateGate(TokenBucket device, TokenBucket user)
{
    public long TryTake(long nowMs)
    {
        var wait = device.TryTake(nowMs);
        if (wait > 0)
        {
            return wait;
        }

        return user.TryTake(nowMs);
    }
}

/// <summary>
/// Hands out rate gates. A user's bucket is shared by the user's sockets and dropped when the last one closes;
/// a device's bucket lives as long as its socket.
/// </summary>
internal sealed class RateGates(Microsoft.Extensions.Options.IOptions<MessagingOptions> options)
{
    private readonly MessagingOptions _options = options.Value;
    private readonly Dictionary<string, (TokenBucket Bucket, int Sockets)> _users = new(StringComparer.Ordinal);

    public RateGate For(string user)
    {
        lock (_users)
        {
            var (bucket, sockets) = _users.TryGetValue(user, out var found) ? found : (new TokenBucket(_options.UserBurst, _options.UserPerSecond), 0);
            _users[user] = (bucket, sockets + 1);
            return new RateGate(new TokenBucket(_options.DeviceBurst, _options.DevicePerSecond), bucket);
        }
    }

    public void Release(string user)
    {
        lock (_users)
        {
            if (_users.TryGetValue(user, out var found))
            {
                if (found.Sockets <= 1)
                {
                    _users.Remove(user);
                }
                else
                {
                    _users[user] = (found.Bucket, found.Sockets - 1);
                }
            }
        }
    }
}
