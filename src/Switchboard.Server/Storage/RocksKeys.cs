using System.Buffers.Binary;
using System.Text;

namespace Switchboard.Server.Storage;

/// <summary>
/// The key layout of the embedded store. Numbers are big-endian so that byte order is numeric order; names are
/// UTF-8 followed by a 0 byte where something comes after them (handles and conversation ids never hold one, and
/// a cid, which may, always comes last).
/// <code>
/// events   conv 0 seq                        → event            (a conversation's events in seq order)
/// cids     sender 0 cid                      → conv, seq, id, ts
/// cursors  'd' user 0 device conv            → delivered        (a device's replay positions, one scan per device)
///          'm' conv 0 user                   → delivered, read, updated
/// default  'h' conv                          → last seq
///          'g' conv                          → group name, created
///          'G' conv 0 user                   → member record    (a group's members, one scan per group)
///          'M' user 0 conv                   → member record    (a user's conversations, one scan per user)
///          'x' conv 0 target                 → (a delete event names this target)
///          'b' day conv                      → (the conversation had events that day: what the purge visits)
///          'u' user, 'v' user 0 device, 'k' token hash, 'a' user 0 device, 's' user   → accounts
///          'p' user                          → who may add the user to groups
///          'i' user 0 conv                   → an invite to a group (a user's invites, one scan per user)
///          'z' user 0 conv                   → muted until (ms; a user's mutes, one scan per user)
///          'q' user 0 device                 → the device's push registration (JSON)
///          'e' user 0 device                 → the device's identity key and signed prekey (JSON)
///          'o' user 0 device id              → one of the device's one-time prekeys
///          '!' name                          → the store's own facts (schema version, import done)
/// </code>
/// </summary>
internal static class RocksKeys
{
    public const byte DeviceCursor = (byte)'d';
    public const byte MemberCursor = (byte)'m';
    public const byte Head = (byte)'h';
    public const byte Group = (byte)'g';
    public const byte GroupMember = (byte)'G';
    public const byte UserMember = (byte)'M';
    public const byte Deleted = (byte)'x';
    public const byte DayBucket = (byte)'b';
    public const byte User = (byte)'u';
    public const byte Device = (byte)'v';
    public const byte Token = (byte)'k';
    public const byte LastActive = (byte)'a';
    public const byte LastSeen = (byte)'s';
    public const byte StoreFact = (byte)'!';
    public const byte Privacy = (byte)'p';
    public const byte Invite = (byte)'i';
    public const byte Mute = (byte)'z';
    public const byte Push = (byte)'q';
    public const byte DeviceKeys = (byte)'e';
    public const byte OneTimeKey = (byte)'o';

    private static readonly UTF8Encoding Utf8 = new(false, true);

    /// <summary>A key being put together, in a buffer reused by one thread.</summary>
    public sealed class Builder
    {
        private byte[] _buffer = new byte[256];
        private int _length;

        public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, _length);

        public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

        public Builder Start(byte tag)
        {
            _length = 0;
            return Byte(tag);
        }

        public Builder Start()
        {
            _length = 0;
            return this;
        }

        public Builder Byte(byte value)
        {
            Ensure(1);
            _buffer[_length++] = value;
            return this;
        }

        public Builder Text(string value)
        {
            Ensure(Utf8.GetMaxByteCount(value.Length));
            _length += Utf8.GetBytes(value, _buffer.AsSpan(_length));
            return this;
        }

        /// <summary>A name followed by the 0 separator.</summary>
        public Builder Name(string value) => Text(value).Byte(0);

        public Builder Int64(long value)
        {
            Ensure(8);
            BinaryPrimitives.WriteInt64BigEndian(_buffer.AsSpan(_length), value);
            _length += 8;
            return this;
        }

        public Builder Int32(int value)
        {
            Ensure(4);
            BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_length), value);
            _length += 4;
            return this;
        }

        public Builder Bytes(ReadOnlySpan<byte> value)
        {
            Ensure(value.Length);
            value.CopyTo(_buffer.AsSpan(_length));
            _length += value.Length;
            return this;
        }

        private void Ensure(int more)
        {
            if (_length + more > _buffer.Length)
            {
                Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + more));
            }
        }
    }

    public static Builder Event(this Builder b, string conv, long seq) => b.Start().Name(conv).Int64(seq);

    /// <summary>Every key of a conversation's events starts with this.</summary>
    public static Builder EventPrefix(this Builder b, string conv) => b.Start().Name(conv);

    public static Builder Cid(this Builder b, string sender, string cid) => b.Start().Name(sender).Text(cid);

    public static Builder DeviceCursorOf(this Builder b, string user, int device, string conv) => b.Start(DeviceCursor).Name(user).Int32(device).Text(conv);

    public static Builder DeviceCursorPrefix(this Builder b, string user, int device) => b.Start(DeviceCursor).Name(user).Int32(device);

    public static Builder MemberCursorOf(this Builder b, string conv, string user) => b.Start(MemberCursor).Name(conv).Text(user);

    public static Builder MemberCursorPrefix(this Builder b, string conv) => b.Start(MemberCursor).Name(conv);

    public static Builder HeadOf(this Builder b, string conv) => b.Start(Head).Text(conv);

    public static Builder GroupOf(this Builder b, string conv) => b.Start(Group).Text(conv);

    public static Builder GroupMemberOf(this Builder b, string conv, string user) => b.Start(GroupMember).Name(conv).Text(user);

    public static Builder GroupMemberPrefix(this Builder b, string conv) => b.Start(GroupMember).Name(conv);

    public static Builder UserMemberOf(this Builder b, string user, string conv) => b.Start(UserMember).Name(user).Text(conv);

    public static Builder UserMemberPrefix(this Builder b, string user) => b.Start(UserMember).Name(user);

    public static Builder DeletedOf(this Builder b, string conv, long target) => b.Start(Deleted).Name(conv).Int64(target);

    public static Builder DeletedPrefix(this Builder b, string conv) => b.Start(Deleted).Name(conv);

    public static Builder DayBucketOf(this Builder b, long day, string conv) => b.Start(DayBucket).Int64(day).Text(conv);

    public static Builder UserOf(this Builder b, string user) => b.Start(User).Text(user);

    public static Builder DeviceOf(this Builder b, string user, int device) => b.Start(Device).Name(user).Int32(device);

    public static Builder DevicePrefix(this Builder b, string user) => b.Start(Device).Name(user);

    public static Builder TokenOf(this Builder b, ReadOnlySpan<byte> tokenHash) => b.Start(Token).Bytes(tokenHash);

    public static Builder LastActiveOf(this Builder b, string user, int device) => b.Start(LastActive).Name(user).Int32(device);

    public static Builder LastSeenOf(this Builder b, string user) => b.Start(LastSeen).Text(user);

    public static Builder PrivacyOf(this Builder b, string user) => b.Start(Privacy).Text(user);

    public static Builder InviteOf(this Builder b, string user, string conv) => b.Start(Invite).Name(user).Text(conv);

    public static Builder InvitePrefix(this Builder b, string user) => b.Start(Invite).Name(user);

    public static Builder MuteOf(this Builder b, string user, string conv) => b.Start(Mute).Name(user).Text(conv);

    public static Builder MutePrefix(this Builder b, string user) => b.Start(Mute).Name(user);

    public static Builder PushOf(this Builder b, string user, int device) => b.Start(Push).Name(user).Int32(device);

    public static Builder DeviceKeysOf(this Builder b, string user, int device) => b.Start(DeviceKeys).Name(user).Int32(device);

    public static Builder OneTimeKeyPrefix(this Builder b, string user, int device) => b.Start(OneTimeKey).Name(user).Int32(device);

    public static Builder OneTimeKeyOf(this Builder b, string user, int device, int id) => b.Start(OneTimeKey).Name(user).Int32(device).Int32(id);

    public static Builder StoreFactOf(this Builder b, string name) => b.Start(StoreFact).Text(name);

    /// <summary>The text after <paramref name="prefixLength"/> bytes of a key.</summary>
    public static string TextAfter(ReadOnlySpan<byte> key, int prefixLength) => Utf8.GetString(key[prefixLength..]);

    /// <summary>The seq at the end of an event or marker key.</summary>
    public static long TrailingInt64(ReadOnlySpan<byte> key) => BinaryPrimitives.ReadInt64BigEndian(key[^8..]);

    /// <summary>The one key after every key that starts with <paramref name="prefix"/>, for a range end.</summary>
    public static byte[] PrefixEnd(ReadOnlySpan<byte> prefix)
    {
        var end = prefix.ToArray();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] != 0xFF)
            {
                end[i]++;
                return end[..(i + 1)];
            }
        }

        throw new ArgumentException("a prefix of 0xFF bytes has no end", nameof(prefix));
    }
}
