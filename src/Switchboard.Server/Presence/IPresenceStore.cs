namespace Switchboard.Server.Presence;

/// <summary>
/// Who is online, as a TTL per user refreshed by traffic. No timer per user: expiries are found by a sweep over
/// one-second buckets.
/// </summary>
internal interface IPresenceStore
{
    /// <summary>Extends the user's TTL; true when this made them online (they were not).</summary>
    bool Refresh(string user, long nowMs);

    /// <summary>Ends the user's presence now; true when they were online.</summary>
    bool Remove(string user);

    bool IsOnline(string user, long nowMs);

    /// <summary>Users whose TTL lapsed by <paramref name="nowMs"/>, removed; with the time each was last refreshed.</summary>
    IReadOnlyList<(string User, long LastRefresh)> Expire(long nowMs);
}
