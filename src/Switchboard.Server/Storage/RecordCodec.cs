using System.Buffers.Binary;
using System.Text;
using Switchboard.Protocol;

namespace Switchboard.Server.Storage;

/// <summary>
/// The value format of the embedded store: a version byte, then fields in a fixed order, integers as
/// variable-length (LEB128, zig-zag where they may be negative) and strings as a length and UTF-8. A binary layout
/// rather than JSON because every byte of a value is written to the log, flushed and compacted again, and field
/// names would be most of a small event; rather than a serialiser library because these are a handful of fixed
/// records that change only with the schema version.
/// </summary>
internal static class RecordCodec
{
    private const byte EventVersion = 1;
    private static readonly UTF8Encoding Utf8 = new(false, true);

    // Kind codes: the five the protocol knows take one byte; anything else is written as text after code 0.
    private static readonly string[] Kinds = ["", EventKinds.Text, EventKinds.Media, EventKinds.Edit, EventKinds.Delete, EventKinds.System];

    [Flags]
    private enum EventFields : byte
    {
        None = 0,
        Body = 1,
        E2ee = 2,
        ReplyTo = 4,
        Target = 8,
        System = 16,
    }

    /// <summary>A value being put together, in a buffer reused by one thread.</summary>
    public sealed class Writer
    {
        private byte[] _buffer = new byte[512];
        private int _length;

        public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, _length);

        public byte[] ToArray() => Span.ToArray();

        public Writer Start()
        {
            _length = 0;
            return this;
        }

        public Writer Byte(byte value)
        {
            Ensure(1);
            _buffer[_length++] = value;
            return this;
        }

        public Writer UInt(ulong value)
        {
            Ensure(10);
            while (value >= 0x80)
            {
                _buffer[_length++] = (byte)(value | 0x80);
                value >>= 7;
            }

            _buffer[_length++] = (byte)value;
            return this;
        }

        public Writer Int(long value) => UInt((ulong)((value << 1) ^ (value >> 63)));

        public Writer Fixed64(long value)
        {
            Ensure(8);
            BinaryPrimitives.WriteInt64BigEndian(_buffer.AsSpan(_length), value);
            _length += 8;
            return this;
        }

        public Writer Text(string value)
        {
            var count = Utf8.GetByteCount(value);
            UInt((ulong)count);
            Ensure(count);
            _length += Utf8.GetBytes(value, _buffer.AsSpan(_length));
            return this;
        }

        public Writer Blob(ReadOnlySpan<byte> value)
        {
            UInt((ulong)value.Length);
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

    /// <summary>Reads a value written by <see cref="Writer"/>, front to back.</summary>
    public ref struct Reader(ReadOnlySpan<byte> span)
    {
        private readonly ReadOnlySpan<byte> _span = span;
        private int _position;

        public byte Byte() => _span[_position++];

        public ulong UInt()
        {
            ulong value = 0;
            var shift = 0;
            while (true)
            {
                var b = _span[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }

                shift += 7;
            }
        }

        public long Int()
        {
            var raw = UInt();
            return (long)(raw >> 1) ^ -(long)(raw & 1);
        }

        public long Fixed64()
        {
            var value = BinaryPrimitives.ReadInt64BigEndian(_span[_position..]);
            _position += 8;
            return value;
        }

        public string Text()
        {
            var count = (int)UInt();
            var text = Utf8.GetString(_span.Slice(_position, count));
            _position += count;
            return text;
        }

        public byte[] Blob()
        {
            var count = (int)UInt();
            var bytes = _span.Slice(_position, count).ToArray();
            _position += count;
            return bytes;
        }
    }

    public static void WriteEvent(Writer w, EventRecord e)
    {
        var fields = EventFields.None;
        fields |= e.Body is not null ? EventFields.Body : 0;
        fields |= e.E2ee is not null ? EventFields.E2ee : 0;
        fields |= e.ReplyTo is not null ? EventFields.ReplyTo : 0;
        fields |= e.Target is not null ? EventFields.Target : 0;
        fields |= e.System is not null ? EventFields.System : 0;
        var kind = (byte)Array.IndexOf(Kinds, e.Kind);
        w.Start().Byte(EventVersion).Byte((byte)fields).Byte(kind is 255 ? (byte)0 : kind).UInt((ulong)e.Id).UInt((ulong)e.Ts).UInt((ulong)e.Dev).Text(e.Sender).Text(e.Cid);
        if (kind is 0 or 255)
        {
            w.Text(e.Kind);
        }

        if (e.Body is { } body)
        {
            w.Text(body);
        }

        if (e.E2ee is { } e2ee)
        {
            w.Text(e2ee);
        }

        if (e.ReplyTo is { } replyTo)
        {
            w.UInt((ulong)replyTo);
        }

        if (e.Target is { } target)
        {
            w.UInt((ulong)target);
        }

        if (e.System is { } system)
        {
            w.Text(system);
        }
    }

    public static EventRecord ReadEvent(string conv, long seq, ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        if (r.Byte() != EventVersion)
        {
            throw new InvalidDataException($"event {conv}#{seq} has an unknown record version");
        }

        var fields = (EventFields)r.Byte();
        var kindCode = r.Byte();
        var id = (long)r.UInt();
        var ts = (long)r.UInt();
        var dev = (int)r.UInt();
        var sender = r.Text();
        var cid = r.Text();
        var kind = kindCode == 0 ? r.Text() : Kinds[kindCode];
        return new EventRecord
        {
            Conv = conv,
            Seq = seq,
            Id = id,
            Ts = ts,
            Dev = dev,
            Sender = sender,
            Cid = cid,
            Kind = kind,
            Body = fields.HasFlag(EventFields.Body) ? r.Text() : null,
            E2ee = fields.HasFlag(EventFields.E2ee) ? r.Text() : null,
            ReplyTo = fields.HasFlag(EventFields.ReplyTo) ? (long)r.UInt() : null,
            Target = fields.HasFlag(EventFields.Target) ? (long)r.UInt() : null,
            System = fields.HasFlag(EventFields.System) ? r.Text() : null,
        };
    }

    /// <summary>The timestamp, sender and cid of a stored event, without decoding the rest (for the purge).</summary>
    public static (long Ts, string Sender, string Cid) ReadEventHead(ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        r.Byte();
        r.Byte();
        r.Byte();
        r.UInt();
        var ts = (long)r.UInt();
        r.UInt();
        return (ts, r.Text(), r.Text());
    }

    public static void WriteCid(Writer w, string conv, long seq, long id, long ts) =>
        w.Start().Text(conv).UInt((ulong)seq).UInt((ulong)id).UInt((ulong)ts);

    public static CidRecord ReadCid(ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        return new CidRecord(r.Text(), (long)r.UInt(), (long)r.UInt(), (long)r.UInt());
    }

    public static void WriteMember(Writer w, MemberRecord m) =>
        w.Start().Text(m.Role).UInt((ulong)m.JoinedSeq).UInt((ulong)(m.RemovedSeq ?? 0)).UInt((ulong)m.JoinedTs);

    public static MemberRecord ReadMember(string conv, string user, ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        var role = r.Text();
        var joined = (long)r.UInt();
        var removed = (long)r.UInt();
        return new MemberRecord(conv, user, role, joined, removed == 0 ? null : removed, (long)r.UInt());
    }

    public static void WriteMemberCursor(Writer w, MemberCursor c) =>
        w.Start().UInt((ulong)c.Delivered).UInt((ulong)c.Read).UInt((ulong)c.Updated);

    public static MemberCursor ReadMemberCursor(string user, ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        return new MemberCursor(user, (long)r.UInt(), (long)r.UInt(), (long)r.UInt());
    }

    public static void WriteGroup(Writer w, string name, long created) => w.Start().Text(name).UInt((ulong)created);

    public static (string Name, long Created) ReadGroup(ReadOnlySpan<byte> value)
    {
        var r = new Reader(value);
        return (r.Text(), (long)r.UInt());
    }

    public static void WriteNumber(Writer w, long value) => w.Start().UInt((ulong)value);

    public static long ReadNumber(ReadOnlySpan<byte> value) => (long)new Reader(value).UInt();
}
