namespace Switchboard.Server.Presence;

/// <summary>
/// Who is online, as a TTL per user refreshed by traffic. No timer per user: expiries are found by a sweep.
/// </summary>
internal interface IPresenceStore
{
    /// <summary>Extends the user's TTL; true when this made them online (they were not).</summary>
    ValueTask<bool> RefreshAsync(string user, long nowMs);

    /// <summary>Ends the user's presence now; true when they were online.</summary>
    ValueTask<bool> RemoveAsync(string user);

    ValueTask<bool> IsOnlineAsync(string user, long nowMs);

    /// <summary>Users whose TTL lapsed by <paramref name="nowMs"/>, removed; with the time each was last refreshed.</summary>
    ValueTask<IReadOnlyList<(string User, long LastRefresh)>> ExpireAsync(long nowMs);
}
