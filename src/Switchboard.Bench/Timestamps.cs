namespace Switchboard.Bench;

/// <summary>
/// Send times by message number, in chunks so a long run never copies; one writer (the send loop), many readers.
/// </summary>
internal sealed class Timestamps
{
    private const int ChunkBits = 16;
    private const int ChunkSize = 1 << ChunkBits;
    private readonly List<long[]> _chunks = [];
    private readonly Lock _grow = new();

    public void Set(long n, long value)
    {
        var chunk = (int)(n >> ChunkBits);
        lock (_grow)
        {
            while (_chunks.Count <= chunk)
            {
                _chunks.Add(new long[ChunkSize]);
            }
        }

        Volatile.Write(ref _chunks[chunk][n & (ChunkSize - 1)], value);
    }

    public long Get(long n)
    {
        var chunk = (int)(n >> ChunkBits);
        long[] array;
        lock (_grow)
        {
            if (chunk >= _chunks.Count)
            {
                return 0;
            }

            array = _chunks[chunk];
        }

        return Volatile.Read(ref array[n & (ChunkSize - 1)]);
    }
}
