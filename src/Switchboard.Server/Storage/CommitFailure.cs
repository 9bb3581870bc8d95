namespace Switchboard.Server.Storage;

/// <summary>
/// A commit that left part of a batch written: a store spread over shards commits each shard's part on its own,
/// so one shard can fail while the others succeed. Everything of a conversation named here was not written; every
/// other conversation's part of the batch was, whole. A conversation is in <see cref="Moved"/> when its last seq
/// was no longer the one the batch was decided on (another node appended first): deciding it again will do.
/// </summary>
internal sealed class PartialCommitException(IReadOnlySet<string> moved, IReadOnlySet<string> failed, Exception? cause)
    : Exception(Describe(moved, failed, cause), cause)
{
    /// <summary>Conversations whose part was refused because another writer appended to them since the batch was decided.</summary>
    public IReadOnlySet<string> Moved { get; } = moved;

    /// <summary>Conversations whose part could not be written (a shard down or failing).</summary>
    public IReadOnlySet<string> Failed { get; } = failed;

    private static string Describe(IReadOnlySet<string> moved, IReadOnlySet<string> failed, Exception? cause) =>
        $"{failed.Count} conversation(s) not written{(cause is null ? "" : ": " + cause.Message)}; {moved.Count} moved on by another writer";
}
