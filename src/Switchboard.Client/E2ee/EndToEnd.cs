using System.Buffers.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Switchboard.Protocol;

namespace Switchboard.Client.E2ee;

/// <summary>
/// One device's end-to-end encryption: its keys, a Double Ratchet session per peer device (started by X3DH from the
/// key directory), its sender key per group and the peers' sender keys. Every change is in the store before the
/// ciphertext it made leaves (a crash never reuses a message key). One operation at a time.
/// </summary>
internal sealed class EndToEnd(IE2eeStore store, Func<string, int?, CancellationToken, Task<List<KeyBundle>>> fetchBundles)
{
    public const int OneTimePrekeysPerUpload = 100;
    private const int SenderKeysKeptPerSender = 4;

    private readonly SemaphoreSlim _lock = new(1, 1);

    // Per group, the devices this device's sender key was handed to (read once, kept; written when it changes).
    private readonly Dictionary<string, HashSet<string>> _handedTo = new(StringComparer.Ordinal);

    private async ValueTask<HashSet<string>> HandedToAsync(string conv)
    {
        if (!_handedTo.TryGetValue(conv, out var handed))
        {
            var stored = await LoadAsync("sk-handed", conv, E2eeJsonContext.Default.HashSetString);
            _handedTo[conv] = handed = stored is null ? new HashSet<string>(StringComparer.Ordinal) : new HashSet<string>(stored, StringComparer.Ordinal);
        }

        return handed;
    }
    private IdentityKeys? _identity;

    /// <summary>Raised when a peer device's identity key differs from the one seen before (user, device).</summary>
    public event Action<string, int>? IdentityChanged;

    private static string Address(string user, int device) => $"{user}:{device.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    private static string B64(ReadOnlySpan<byte> bytes) => Base64Url.EncodeToString(bytes);

    private static byte[] FromB64(string text)
    {
        try
        {
            return Base64Url.DecodeFromChars(text);
        }
        catch (FormatException ex)
        {
            throw new DecryptionException("not base64url", ex);
        }
    }

    private async ValueTask<T?> LoadAsync<T>(string kind, string key, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class =>
        await store.GetAsync(kind, key) is { } bytes ? JsonSerializer.Deserialize(bytes, type) : null;

    private ValueTask SaveAsync<T>(string kind, string key, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        store.SetAsync(kind, key, JsonSerializer.SerializeToUtf8Bytes(value, type));

    /// <summary>This device's identity, made on first use.</summary>
    public async ValueTask<IdentityKeys?> IdentityAsync() => _identity ??= await LoadAsync("identity", "", E2eeJsonContext.Default.IdentityKeys);

    /// <summary>
    /// The keys to publish when this device has none yet (identity, signed prekey 1, one-time prekeys), or null when
    /// it has; the private halves are stored first.
    /// </summary>
    public async Task<KeyUpload?> NewKeysAsync()
    {
        await _lock.WaitAsync();
        try
        {
            if (await IdentityAsync() is not null)
            {
                return null;
            }

            var identity = IdentityKeys.Create();
            var (spkPrivate, spkPublic) = Primitives.NewX25519();
            var signed = new SignedPrekeyPair(1, spkPrivate, spkPublic, Primitives.Sign(identity.SigningPrivate, spkPublic), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            await SaveAsync("spk", "1", signed, E2eeJsonContext.Default.SignedPrekeyPair);
            var oneTime = await NewOneTimeKeysLockedAsync(OneTimePrekeysPerUpload);
            await SaveAsync("identity", "", identity, E2eeJsonContext.Default.IdentityKeys);
            _identity = identity;
            return new KeyUpload(B64(identity.SigningPublic), new SignedPrekey(signed.Id, B64(signed.Public), B64(signed.Signature)), oneTime)
            {
                IdentityDh = new IdentityDhKey(B64(identity.DhPublic), B64(identity.DhSignature)),
            };
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>How long a signed prekey is used before a new one replaces it (Signal rotates weekly to monthly).</summary>
    public static readonly TimeSpan SignedPrekeyLifetime = TimeSpan.FromDays(7);

    /// <summary>
    /// A new signed prekey to publish when the current one is older than <see cref="SignedPrekeyLifetime"/> (as of
    /// <paramref name="now"/>), else null. Old ones are kept: first messages made with them may still come.
    /// </summary>
    public async Task<KeyUpload?> RotateSignedPrekeyAsync(DateTimeOffset now)
    {
        await _lock.WaitAsync();
        try
        {
            if (await IdentityAsync() is not { } identity)
            {
                return null;
            }

            var ids = (await store.KeysAsync("spk")).Select(k => int.Parse(k, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            var newest = ids.Count == 0 ? 0 : ids.Max();
            if (newest > 0 && await LoadAsync("spk", newest.ToString(System.Globalization.CultureInfo.InvariantCulture), E2eeJsonContext.Default.SignedPrekeyPair) is { } current
                && now.ToUnixTimeMilliseconds() - current.CreatedAt < SignedPrekeyLifetime.TotalMilliseconds)
            {
                return null;
            }

            var (priv, pub) = Primitives.NewX25519();
            var signed = new SignedPrekeyPair(newest + 1, priv, pub, Primitives.Sign(identity.SigningPrivate, pub), now.ToUnixTimeMilliseconds());
            await SaveAsync("spk", signed.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), signed, E2eeJsonContext.Default.SignedPrekeyPair);
            return new KeyUpload(null, new SignedPrekey(signed.Id, B64(signed.Public), B64(signed.Signature)), null);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>More one-time prekeys to publish (after <c>keys_low</c>).</summary>
    public async Task<KeyUpload> MoreOneTimeKeysAsync(int count)
    {
        await _lock.WaitAsync();
        try
        {
            return new KeyUpload(null, null, await NewOneTimeKeysLockedAsync(count));
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<List<OneTimePrekey>> NewOneTimeKeysLockedAsync(int count)
    {
        var next = await store.GetAsync("meta", "next-opk") is { Length: 4 } n ? System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(n) : 1;
        var list = new List<OneTimePrekey>(count);
        for (var i = 0; i < count; i++)
        {
            var (priv, pub) = Primitives.NewX25519();
            await store.SetAsync("opk", (next + i).ToString(System.Globalization.CultureInfo.InvariantCulture), priv);
            list.Add(new OneTimePrekey(next + i, B64(pub)));
        }

        var after = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(after, next + count);
        await store.SetAsync("meta", "next-opk", after);
        return list;
    }

    /// <summary>Drops the session with a device: the next message starts a new one from its published keys.</summary>
    public async Task ResetSessionAsync(DeviceAddress device)
    {
        await _lock.WaitAsync();
        try
        {
            await store.DeleteAsync("session", Address(device.User, device.Device));
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Whether there is a session with the device.</summary>
    public async ValueTask<bool> HasSessionAsync(string user, int device) => await store.GetAsync("session", Address(user, device)) is not null;

    /// <summary>
    /// Encrypts <paramref name="content"/> for each device (pairwise), fetching the keys of devices without a session.
    /// Throws <see cref="SwitchboardException"/> <c>no_keys</c> naming the devices that published none.
    /// </summary>
    public async Task<List<JsonObject>> SealPairwiseAsync(IReadOnlyList<DeviceAddress> devices, Content content, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            await EnsureSessionsLockedAsync(devices, cancellationToken);
            var padded = content.Pad();
            var to = new List<JsonObject>(devices.Count);
            foreach (var device in devices)
            {
                to.Add(new JsonObject { ["user"] = device.User, ["device"] = device.Device, ["ct"] = await EncryptForLockedAsync(device, padded) });
            }

            return to;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>The <c>e2ee</c> payload of a direct send: <c>{v:1, to}</c>.</summary>
    public async Task<JsonElement> SealDirectAsync(IReadOnlyList<DeviceAddress> devices, Content content, CancellationToken cancellationToken)
    {
        var to = await SealPairwiseAsync(devices, content, cancellationToken);
        return JsonSerializer.SerializeToElement(new JsonObject { ["v"] = 1, ["to"] = new JsonArray([.. to]) });
    }

    /// <summary>
    /// The <c>e2ee</c> payload of a group send: <c>{v:1, sk, devices, to}</c>, the sender key handed (pairwise) to the
    /// current devices that lack it. When a device that had it is gone (a member removed, a device unlinked), a new
    /// sender key is made and handed to every current device, so the gone one cannot read what follows. Hand-outs
    /// beyond <see cref="MaxHandoutBytesPerSend"/> go first, in <c>key</c> payloads (<paramref name="keys"/>, sent before the message).
    /// </summary>
    public async Task<JsonElement> SealGroupAsync(string conv, IReadOnlyList<DeviceAddress> devices, Content content, CancellationToken cancellationToken, List<JsonElement>? keys = null)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            var current = devices.Select(d => Address(d.User, d.Device)).ToHashSet(StringComparer.Ordinal);
            var state = await LoadAsync("sk-mine", conv, E2eeJsonContext.Default.SenderKeyState);
            // A copy: what this call hands out counts only once it is stored.
            var handedTo = new HashSet<string>(await HandedToAsync(conv), StringComparer.Ordinal);
            var rotated = state is null || !handedTo.IsSubsetOf(current);
            if (rotated)
            {
                // Stored before the new set of devices: a set stored beside the old key would pass for it.
                state = SenderKeyState.Create();
                await SaveAsync("sk-mine", conv, state, E2eeJsonContext.Default.SenderKeyState);
                handedTo.Clear();
            }

            var need = devices.Where(d => !handedTo.Contains(Address(d.User, d.Device))).ToList();
            await EnsureSessionsLockedAsync(need, cancellationToken);
            var digest = DeviceSetDigest(devices);
            var handout = new Content { Skd = new SenderKeyDistribution(conv, state!.KeyId, state.Iteration, B64(state.ChainKey), B64(state.SigningPublic)) }.Pad();
            var to = new JsonArray();
            var size = 0;
            foreach (var device in need)
            {
                var entry = new JsonObject { ["user"] = device.User, ["device"] = device.Device, ["ct"] = await EncryptForLockedAsync(device, handout) };
                var entrySize = entry.ToJsonString().Length;
                if (size + entrySize > MaxHandoutBytesPerSend && to.Count > 0)
                {
                    if (keys is null)
                    {
                        throw new InvalidOperationException("too many hand-outs for one send: pass a list for the key payloads");
                    }

                    keys.Add(JsonSerializer.SerializeToElement(new JsonObject { ["v"] = 1, ["devices"] = digest, ["to"] = to }));
                    to = [];
                    size = 0;
                }

                to.Add(entry);
                size += entrySize;
                handedTo.Add(Address(device.User, device.Device));
            }

            if (rotated || need.Count > 0)
            {
                // Written only when it changes: for a big group it is the largest part of the state.
                await SaveAsync("sk-handed", conv, handedTo, E2eeJsonContext.Default.HashSetString);
                _handedTo[conv] = handedTo;
            }

            var sk = state.Encrypt(conv, content.Pad());
            await SaveAsync("sk-mine", conv, state, E2eeJsonContext.Default.SenderKeyState);
            return JsonSerializer.SerializeToElement(new JsonObject { ["v"] = 1, ["sk"] = B64(sk), ["devices"] = digest, ["to"] = to });
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Hand-outs one send carries at most (JSON bytes), below the server's default <c>MaxE2eeBytes</c> (48 KiB).</summary>
    public const int MaxHandoutBytesPerSend = 40 * 1024;

    /// <summary>The digest a Sender-Key send names its devices by (docs/protocol.md).</summary>
    public static string DeviceSetDigest(IEnumerable<DeviceAddress> devices)
    {
        var lines = devices.Select(d => Address(d.User, d.Device) + "\n").Order(StringComparer.Ordinal);
        return B64(System.Security.Cryptography.SHA256.HashData(Text.Utf8(string.Concat(lines))));
    }

    private async Task EnsureSessionsLockedAsync(IReadOnlyList<DeviceAddress> devices, CancellationToken cancellationToken)
    {
        var missing = new List<DeviceAddress>();
        foreach (var device in devices)
        {
            if (await store.GetAsync("session", Address(device.User, device.Device)) is null)
            {
                missing.Add(device);
            }
        }

        var without = new List<DeviceAddress>();
        foreach (var group in missing.GroupBy(d => d.User, StringComparer.Ordinal))
        {
            var wanted = group.Select(d => d.Device).ToHashSet();
            // One device: ask for it alone, so the others' one-time prekeys are not used up.
            var bundles = await fetchBundles(group.Key, wanted.Count == 1 ? wanted.Single() : null, cancellationToken);
            foreach (var device in wanted)
            {
                if (bundles.FirstOrDefault(b => b.Device == device) is not { IdentityDh: { } identityDh } bundle)
                {
                    without.Add(new DeviceAddress(group.Key, device));
                    continue;
                }

                var peer = new PeerBundle(bundle.User, bundle.Device, FromB64(bundle.IdentityKey), FromB64(identityDh.Key), FromB64(identityDh.Signature),
                    bundle.SignedPrekey.Id, FromB64(bundle.SignedPrekey.Key), FromB64(bundle.SignedPrekey.Signature),
                    bundle.OneTimePrekey?.Id, bundle.OneTimePrekey is { } otp ? FromB64(otp.Key) : null);
                var session = X3dh.Initiate((await IdentityAsync())!, peer);
                await SeenIdentityLockedAsync(peer.User, peer.Device, peer.Identity);
                await SaveAsync("session", Address(peer.User, peer.Device), session, E2eeJsonContext.Default.RatchetSession);
            }
        }

        if (without.Count > 0)
        {
            throw new SwitchboardException(NoKeys, $"no keys published by {string.Join(", ", without.Select(d => $"{d.User}'s device {d.Device}"))}: it cannot be sent encrypted");
        }
    }

    public const string NoKeys = E2eeErrorCodes.NoKeys;

    private async Task<string> EncryptForLockedAsync(DeviceAddress device, byte[] padded)
    {
        var key = Address(device.User, device.Device);
        var session = (await LoadAsync("session", key, E2eeJsonContext.Default.RatchetSession))!;
        var message = session.Encrypt(padded);
        if (session.Pending is { } pending)
        {
            message = X3dh.Wrap((await IdentityAsync())!, pending, message);
        }

        await SaveAsync("session", key, session, E2eeJsonContext.Default.RatchetSession);
        return B64(message);
    }

    /// <summary>
    /// Decrypts a received event's payload: its own pairwise ciphertext (a direct message, or a sender key hand-out),
    /// then the Sender-Key ciphertext if there is one. Throws <see cref="DecryptionException"/>; nothing changes then.
    /// </summary>
    public async Task<Content> OpenAsync(MsgFrame message, string myUser, int myDevice)
    {
        if (message.E2ee is not { ValueKind: JsonValueKind.Object } e2ee)
        {
            throw new DecryptionException("no e2ee payload");
        }

        await _lock.WaitAsync();
        try
        {
            Content? pairwise = null;
            if (e2ee.TryGetProperty("to", out var to) && to.ValueKind == JsonValueKind.Array)
            {
                foreach (var entry in to.EnumerateArray())
                {
                    if (entry.TryGetProperty("user", out var u) && u.GetString() == myUser && entry.TryGetProperty("device", out var d) && d.TryGetInt32(out var n) && n == myDevice
                        && entry.TryGetProperty("ct", out var ct) && ct.GetString() is { } text)
                    {
                        pairwise = Content.Unpad(await DecryptPairwiseLockedAsync(message.From, message.Dev, FromB64(text)));
                    }
                }
            }

            if (pairwise?.Skd is { } skd)
            {
                if (skd.Conv != message.Conv)
                {
                    throw new DecryptionException("a sender key for another conversation");
                }

                await AcceptSenderKeyLockedAsync(message.Conv, message.From, message.Dev, skd);
            }

            if (e2ee.TryGetProperty("sk", out var sk) && sk.GetString() is { } senderKeyText)
            {
                return Content.Unpad(await DecryptGroupLockedAsync(message.Conv, message.From, message.Dev, FromB64(senderKeyText)));
            }

            if (message.Kind == EventKinds.Key)
            {
                return pairwise ?? new Content(); // hand-outs for other devices: nothing for this one
            }

            return pairwise ?? throw new DecryptionException("no ciphertext for this device");
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<byte[]> DecryptPairwiseLockedAsync(string user, int device, byte[] message)
    {
        var key = Address(user, device);
        if (message.Length > 1 && message[1] == RatchetSession.TypePrekey)
        {
            var (identity, identityDh, ephemeral, signedId, oneTimeId, inner) = X3dh.Unwrap(message);
            // A session is started once per ephemeral key: the same first message again belongs to the session it
            // started (the initiator wraps until it hears back), or is a replay.
            var started = await store.GetAsync("base", B64(ephemeral)) is not null;
            var existing = await LoadAsync("session", key, E2eeJsonContext.Default.RatchetSession);
            if (existing is not null && existing.RemoteIdentity.AsSpan().SequenceEqual(identity))
            {
                try
                {
                    var early = existing.Decrypt(inner);
                    await SaveAsync("session", key, existing, E2eeJsonContext.Default.RatchetSession);
                    return early;
                }
                catch (DecryptionException) when (!started)
                {
                    // a new session from the same device: started below
                }
            }

            if (started)
            {
                throw new DecryptionException("a first message already used (a replay)");
            }

            var signed = await LoadAsync("spk", signedId.ToString(System.Globalization.CultureInfo.InvariantCulture), E2eeJsonContext.Default.SignedPrekeyPair)
                ?? throw new DecryptionException($"unknown signed prekey {signedId}");
            byte[]? oneTime = null;
            if (oneTimeId is { } id && (oneTime = await store.GetAsync("opk", id.ToString(System.Globalization.CultureInfo.InvariantCulture))) is null)
            {
                throw new DecryptionException($"one-time prekey {id} is used up (a replayed first message)");
            }

            var session = X3dh.Respond((await IdentityAsync())!, signed, oneTime, identity, identityDh, ephemeral);
            var plaintext = session.Decrypt(inner);
            if (oneTimeId is { } used)
            {
                await store.DeleteAsync("opk", used.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            await SeenIdentityLockedAsync(user, device, identity);
            await store.SetAsync("base", B64(ephemeral), [1]);
            await SaveAsync("session", key, session, E2eeJsonContext.Default.RatchetSession);
            return plaintext;
        }

        var current = await LoadAsync("session", key, E2eeJsonContext.Default.RatchetSession) ?? throw new DecryptionException($"no session with {user}'s device {device}");
        var result = current.Decrypt(message);
        await SaveAsync("session", key, current, E2eeJsonContext.Default.RatchetSession);
        return result;
    }

    private async Task AcceptSenderKeyLockedAsync(string conv, string user, int device, SenderKeyDistribution skd)
    {
        var key = $"{conv}|{Address(user, device)}";
        var states = await LoadAsync("sk-peer", key, E2eeJsonContext.Default.ListSenderKeyState) ?? [];
        if (states.Any(s => s.KeyId == skd.Id))
        {
            return; // handed out again: keep the chain as it has moved
        }

        states.Insert(0, new SenderKeyState { KeyId = skd.Id, Iteration = skd.Iteration, ChainKey = FromB64(skd.Chain), SigningPublic = FromB64(skd.Sign) });
        if (states.Count > SenderKeysKeptPerSender)
        {
            states.RemoveRange(SenderKeysKeptPerSender, states.Count - SenderKeysKeptPerSender);
        }

        await SaveAsync("sk-peer", key, states, E2eeJsonContext.Default.ListSenderKeyState);
    }

    private async Task<byte[]> DecryptGroupLockedAsync(string conv, string user, int device, byte[] message)
    {
        var key = $"{conv}|{Address(user, device)}";
        var keyId = SenderKeyState.KeyIdOf(message);
        var states = await LoadAsync("sk-peer", key, E2eeJsonContext.Default.ListSenderKeyState) ?? [];
        var state = states.FirstOrDefault(s => s.KeyId == keyId) ?? throw new DecryptionException($"no sender key {keyId} of {user}'s device {device}");
        var plaintext = state.Decrypt(conv, message);
        await SaveAsync("sk-peer", key, states, E2eeJsonContext.Default.ListSenderKeyState);
        return plaintext;
    }

    /// <summary>Records a peer device's identity key (trust on first use); a different one later is an identity change.</summary>
    private async Task SeenIdentityLockedAsync(string user, int device, byte[] identity)
    {
        var key = Address(user, device);
        var known = await store.GetAsync("peer", key);
        if (known is not null && !known.AsSpan().SequenceEqual(identity))
        {
            IdentityChanged?.Invoke(user, device);
        }

        await store.SetAsync("peer", key, identity);
    }

    /// <summary>The identity keys seen of a user's devices (device → Ed25519 public key).</summary>
    public async Task<SortedDictionary<int, byte[]>> KnownIdentitiesAsync(string user)
    {
        var result = new SortedDictionary<int, byte[]>();
        foreach (var key in await store.KeysAsync("peer"))
        {
            var colon = key.LastIndexOf(':');
            if (key[..colon] == user && int.TryParse(key[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var device) && await store.GetAsync("peer", key) is { } identity)
            {
                result[device] = identity;
            }
        }

        return result;
    }
}

/// <summary>Safety numbers (docs/e2ee.md): 30 digits per user from their devices' identity keys, the lower user's first.</summary>
internal static class SafetyNumbers
{
    private const int Iterations = 5_200;

    public static string Digits(string user, IEnumerable<byte[]> identitiesByDevice)
    {
        var keys = identitiesByDevice.SelectMany(k => k).ToArray();
        var hash = System.Security.Cryptography.SHA512.HashData([0, 0, .. keys, .. Text.Utf8(user)]);
        for (var i = 0; i < Iterations; i++)
        {
            hash = System.Security.Cryptography.SHA512.HashData([.. hash, .. keys]);
        }

        var digits = new System.Text.StringBuilder(30);
        for (var chunk = 0; chunk < 6; chunk++)
        {
            ulong value = 0;
            for (var b = 0; b < 5; b++)
            {
                value = (value << 8) | hash[(chunk * 5) + b];
            }

            digits.Append((value % 100_000).ToString("D5", System.Globalization.CultureInfo.InvariantCulture));
        }

        return digits.ToString();
    }

    /// <summary>The 60 digits as 12 groups of 5.</summary>
    public static string Combine(string a, string b)
    {
        var all = string.CompareOrdinal(a, b) <= 0 ? a + b : b + a;
        return string.Join(' ', Enumerable.Range(0, 12).Select(i => all.Substring(i * 5, 5)));
    }
}
