// End-to-end encryption in the page, with WebCrypto, written from docs/e2ee.md: X3DH, the Double Ratchet per
// device, Sender Keys in groups. Interoperates with the C# SDK and the command line. Private keys are CryptoKey
// objects kept in IndexedDB, non-extractable; chain and root keys are bytes in the same store.

const subtle = crypto.subtle;
const te = new TextEncoder();
const td = new TextDecoder();

// ── bytes ────────────────────────────────────────────────────────────────────────────────────────────────────

export const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
export function unb64(text) {
  const s = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const u32 = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n >>> 0); return b; };
const readU32 = (bytes, at) => new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0);
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const ZERO32 = new Uint8Array(32);

const LABEL = {
  x3dh: te.encode('Switchboard X3DH v1'),
  ratchet: te.encode('Switchboard Ratchet v1'),
  message: te.encode('Switchboard Message v1'),
  senderKey: te.encode('Switchboard SenderKey v1'),
  identityDh: te.encode('switchboard identity dh'),
};

// ── primitives ───────────────────────────────────────────────────────────────────────────────────────────────

async function x25519Pair() {
  const pair = await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  return { priv: pair.privateKey, pub: new Uint8Array(await subtle.exportKey('raw', pair.publicKey)) };
}
async function dh(priv, pubBytes) {
  const pub = await subtle.importKey('raw', pubBytes, { name: 'X25519' }, true, []);
  return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, priv, 256));
}
async function ed25519Pair() {
  const pair = await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  return { priv: pair.privateKey, pub: new Uint8Array(await subtle.exportKey('raw', pair.publicKey)) };
}
const sign = async (priv, data) => new Uint8Array(await subtle.sign('Ed25519', priv, data));
async function verify(pubBytes, data, signature) {
  if (signature.length !== 64 || pubBytes.length !== 32) return false;
  const pub = await subtle.importKey('raw', pubBytes, { name: 'Ed25519' }, true, ['verify']);
  return subtle.verify('Ed25519', pub, signature, data);
}
async function hkdf(ikm, salt, info, length) {
  const key = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, key, length * 8));
}
async function hmac(key, byte) {
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, new Uint8Array([byte])));
}
async function seal(key, nonce, ad, plaintext) {
  const k = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt']);
  return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: ad, tagLength: 128 }, k, plaintext));
}
async function open(key, nonce, ad, ciphertext) {
  const k = await subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
  try {
    return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: ad, tagLength: 128 }, k, ciphertext));
  } catch {
    throw new DecryptionError('the message does not authenticate');
  }
}

export class DecryptionError extends Error {}

const kdfRoot = async (rk, dhOut) => { const okm = await hkdf(dhOut, rk, LABEL.ratchet, 64); return [okm.slice(0, 32), okm.slice(32)]; };
const kdfChain = async (ck) => [await hmac(ck, 0x02), await hmac(ck, 0x01)]; // [next chain, message key]
const messageKeys = async (mk, info) => { const okm = await hkdf(mk, ZERO32, info, 44); return [okm.slice(0, 32), okm.slice(32)]; };

// ── content ──────────────────────────────────────────────────────────────────────────────────────────────────

function pad(content) {
  const json = te.encode(JSON.stringify(content));
  const out = new Uint8Array((Math.floor(json.length / 32) + 1) * 32);
  out.set(json);
  out[json.length] = 0x80;
  return out;
}
function unpad(bytes) {
  let end = bytes.length - 1;
  while (end >= 0 && bytes[end] === 0) end--;
  if (end < 0 || bytes[end] !== 0x80) throw new DecryptionError('bad padding');
  try { return JSON.parse(td.decode(bytes.slice(0, end))); } catch { throw new DecryptionError('content is not JSON'); }
}

// ── the store ────────────────────────────────────────────────────────────────────────────────────────────────

function idb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('switchboard-e2ee', 1);
    request.onupgradeneeded = () => request.result.createObjectStore('kv');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}
async function kv(mode, fn) {
  const db = await idb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction('kv', mode);
      const request = fn(tx.objectStore('kv'));
      tx.oncomplete = () => resolve(request?.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally { db.close(); }
}
const get = (key) => kv('readonly', (s) => s.get(key));
const put = (key, value) => kv('readwrite', (s) => s.put(value, key));
const del = (key) => kv('readwrite', (s) => s.delete(key));

/** Forgets every key and session (signing out). */
export const forgetAll = () => kv('readwrite', (s) => s.clear());

// ── the device ───────────────────────────────────────────────────────────────────────────────────────────────

const address = (user, device) => `${user}:${device}`;
let queue = Promise.resolve();
/** One operation at a time, as the SDK does: every change is stored before the ciphertext it made leaves. */
const serial = (fn) => (queue = queue.then(fn, fn));

/** The keys to publish the first time (identity, signed prekey 1, 100 one-time prekeys), or null when made before. */
export function newKeys() {
  return serial(async () => {
    if (await get('identity')) return null;
    const signing = await ed25519Pair();
    const agreement = await x25519Pair();
    const identity = { signPriv: signing.priv, signPub: signing.pub, dhPriv: agreement.priv, dhPub: agreement.pub, dhSig: await sign(signing.priv, cat(LABEL.identityDh, agreement.pub)) };
    const spk = await x25519Pair();
    const spkSig = await sign(signing.priv, spk.pub);
    await put('spk:1', { id: 1, priv: spk.priv, pub: spk.pub, sig: spkSig, created: Date.now() });
    const oneTime = [];
    for (let id = 1; id <= 100; id++) {
      const k = await x25519Pair();
      await put(`opk:${id}`, k.priv);
      oneTime.push({ id, key: b64(k.pub) });
    }
    await put('meta:next-opk', 101);
    await put('identity', identity);
    return {
      identity_key: b64(identity.signPub),
      identity_dh: { key: b64(identity.dhPub), signature: b64(identity.dhSig) },
      signed_prekey: { id: 1, key: b64(spk.pub), signature: b64(spkSig) },
      one_time_prekeys: oneTime,
    };
  });
}

async function initiate(identity, bundle) {
  const peer = {
    identity: unb64(bundle.identity_key), dh: unb64(bundle.identity_dh.key), dhSig: unb64(bundle.identity_dh.signature),
    spkId: bundle.signed_prekey.id, spk: unb64(bundle.signed_prekey.key), spkSig: unb64(bundle.signed_prekey.signature),
    opkId: bundle.one_time_prekey?.id, opk: bundle.one_time_prekey ? unb64(bundle.one_time_prekey.key) : null,
  };
  if (!(await verify(peer.identity, cat(LABEL.identityDh, peer.dh), peer.dhSig)) || !(await verify(peer.identity, peer.spk, peer.spkSig))) {
    throw new DecryptionError(`the keys of ${bundle.user}'s device ${bundle.device} are not signed by its identity key`);
  }
  const eph = await x25519Pair();
  const parts = [await dh(identity.dhPriv, peer.spk), await dh(eph.priv, peer.dh), await dh(eph.priv, peer.spk)];
  if (peer.opk) parts.push(await dh(eph.priv, peer.opk));
  const sk = await hkdf(cat(new Uint8Array(32).fill(0xff), ...parts), ZERO32, LABEL.x3dh, 32);
  const ratchet = await x25519Pair();
  const [rk, cks] = await kdfRoot(sk, await dh(ratchet.priv, peer.spk));
  return {
    rk, dhsPriv: ratchet.priv, dhsPub: ratchet.pub, dhr: peer.spk, cks, ckr: null, ns: 0, nr: 0, pn: 0, skipped: [],
    ad: cat(identity.signPub, identity.dhPub, peer.identity, peer.dh), remoteIdentity: peer.identity,
    pending: { eph: eph.pub, spkId: peer.spkId, opkId: peer.opkId ?? null },
  };
}

async function ratchetEncrypt(s, plaintext) {
  const [next, mk] = await kdfChain(s.cks);
  s.cks = next;
  const header = cat(new Uint8Array([1, 1]), s.dhsPub, u32(s.pn), u32(s.ns));
  s.ns++;
  const [key, nonce] = await messageKeys(mk, LABEL.message);
  return cat(header, await seal(key, nonce, cat(s.ad, header), plaintext));
}

async function skipTo(s, until) {
  if (!s.ckr) return;
  if (until - s.nr > 25000) throw new DecryptionError('more than 25000 messages skipped in one chain');
  while (s.nr < until) {
    const [next, mk] = await kdfChain(s.ckr);
    s.ckr = next;
    s.skipped.push({ dh: b64(s.dhr), n: s.nr, mk });
    s.nr++;
  }
  if (s.skipped.length > 2000) s.skipped.splice(0, s.skipped.length - 2000);
}

/** Decrypts on a copy; the session changes only when the message authenticates. */
async function ratchetDecrypt(session, message) {
  if (message.length < 42 + 16 || message[0] !== 1 || message[1] !== 1) throw new DecryptionError('not a ratchet message');
  const header = message.slice(0, 42);
  const dhKey = header.slice(2, 34);
  const pn = readU32(header, 34);
  const n = readU32(header, 38);
  const body = message.slice(42);
  const ad = cat(session.ad, header);
  const at = session.skipped.findIndex((k) => k.n === n && k.dh === b64(dhKey));
  if (at >= 0) {
    const [key, nonce] = await messageKeys(session.skipped[at].mk, LABEL.message);
    const plaintext = await open(key, nonce, ad, body);
    session.skipped.splice(at, 1);
    session.pending = null;
    return plaintext;
  }
  const s = structuredClone(session);
  if (!s.dhr || !equal(dhKey, s.dhr)) {
    await skipTo(s, pn);
    s.pn = s.ns; s.ns = 0; s.nr = 0; s.dhr = dhKey;
    [s.rk, s.ckr] = await kdfRoot(s.rk, await dh(s.dhsPriv, s.dhr));
    const fresh = await x25519Pair();
    s.dhsPriv = fresh.priv; s.dhsPub = fresh.pub;
    [s.rk, s.cks] = await kdfRoot(s.rk, await dh(s.dhsPriv, s.dhr));
  } else if (n < s.nr) {
    throw new DecryptionError('a message already decrypted (a replay) or too old');
  }
  await skipTo(s, n);
  const [next, mk] = await kdfChain(s.ckr);
  s.ckr = next;
  s.nr++;
  const [key, nonce] = await messageKeys(mk, LABEL.message);
  const plaintext = await open(key, nonce, ad, body);
  s.pending = null;
  Object.assign(session, s);
  return plaintext;
}

async function encryptFor(identity, user, device, padded) {
  const key = `session:${address(user, device)}`;
  const s = await get(key);
  let message = await ratchetEncrypt(s, padded);
  if (s.pending) {
    message = cat(new Uint8Array([1, 2]), identity.signPub, identity.dhPub, identity.dhSig, s.pending.eph, u32(s.pending.spkId), u32(s.pending.opkId ?? 0xffffffff), message);
  }
  await put(key, s);
  return b64(message);
}

/** Sessions with every device lacking one, from the key directory; the devices that published none are thrown. */
async function ensureSessions(identity, devices, fetchBundles) {
  const without = [];
  const missing = [];
  for (const d of devices) if (!(await get(`session:${address(d.user, d.device)}`))) missing.push(d);
  const byUser = Map.groupBy(missing, (d) => d.user);
  for (const [user, list] of byUser) {
    const bundles = await fetchBundles(user, list.length === 1 ? list[0].device : null);
    for (const d of list) {
      const bundle = bundles.find((b) => b.device === d.device);
      if (!bundle?.identity_dh) { without.push(d); continue; }
      await put(`session:${address(d.user, d.device)}`, await initiate(identity, bundle));
      await put(`peer:${address(d.user, d.device)}`, unb64(bundle.identity_key));
    }
  }
  if (without.length) {
    const error = new Error(`no keys published by ${without.map((d) => `${d.user}'s device ${d.device}`).join(', ')}`);
    error.code = 'no_keys';
    throw error;
  }
}

/** The e2ee payload of a direct send: one ciphertext per device. */
export function sealDirect(devices, text, fetchBundles) {
  return serial(async () => {
    const identity = await get('identity');
    await ensureSessions(identity, devices, fetchBundles);
    const padded = pad({ body: text });
    const to = [];
    for (const d of devices) to.push({ user: d.user, device: d.device, ct: await encryptFor(identity, d.user, d.device, padded) });
    return { v: 1, to };
  });
}

/** The digest a Sender-Key send names its devices by. */
export async function deviceDigest(devices) {
  const lines = devices.map((d) => `${address(d.user, d.device)}\n`).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return b64(new Uint8Array(await subtle.digest('SHA-256', te.encode(lines.join('')))));
}

/** A group send: { keys: [payloads of kind key, sent first], e2ee }. A new sender key when a device that had it is gone. */
export function sealGroup(conv, devices, text, fetchBundles) {
  return serial(async () => {
    const identity = await get('identity');
    const current = new Set(devices.map((d) => address(d.user, d.device)));
    let own = await get(`sk-own:${conv}`);
    if (!own || [...own.handedTo].some((a) => !current.has(a))) {
      const signing = await ed25519Pair();
      own = { keyId: crypto.getRandomValues(new Uint32Array(1))[0] & 0x7fffffff, iteration: 0, chain: crypto.getRandomValues(new Uint8Array(32)), signPriv: signing.priv, signPub: signing.pub, handedTo: new Set() };
    }
    const need = devices.filter((d) => !own.handedTo.has(address(d.user, d.device)));
    await ensureSessions(identity, need, fetchBundles);
    const digest = await deviceDigest(devices);
    const handout = pad({ skd: { conv, id: own.keyId, iteration: own.iteration, chain: b64(own.chain), sign: b64(own.signPub) } });
    const keys = [];
    let to = [];
    let size = 0;
    for (const d of need) {
      const entry = { user: d.user, device: d.device, ct: await encryptFor(identity, d.user, d.device, handout) };
      const entrySize = JSON.stringify(entry).length;
      if (size + entrySize > 40 * 1024 && to.length) { keys.push({ v: 1, devices: digest, to }); to = []; size = 0; }
      to.push(entry);
      size += entrySize;
      own.handedTo.add(address(d.user, d.device));
    }
    const [next, mk] = await kdfChain(own.chain);
    const header = cat(new Uint8Array([1, 3]), u32(own.keyId), u32(own.iteration));
    own.chain = next;
    own.iteration++;
    const [key, nonce] = await messageKeys(mk, LABEL.senderKey);
    const body = cat(header, await seal(key, nonce, cat(header, te.encode(conv)), pad({ body: text })));
    const sk = cat(body, await sign(own.signPriv, body));
    await put(`sk-own:${conv}`, own);
    return { keys, e2ee: { v: 1, sk: b64(sk), devices: digest, to } };
  });
}

async function decryptPairwise(identity, from, dev, message) {
  const key = `session:${address(from, dev)}`;
  if (message.length > 1 && message[1] === 2) {
    if (message.length < 170 + 42 || message[0] !== 1) throw new DecryptionError('not a prekey message');
    const theirIdentity = message.slice(2, 34);
    const theirDh = message.slice(34, 66);
    if (!(await verify(theirIdentity, cat(LABEL.identityDh, theirDh), message.slice(66, 130)))) throw new DecryptionError("the sender's identity keys do not match");
    const eph = message.slice(130, 162);
    const spkId = readU32(message, 162);
    const opkId = readU32(message, 166);
    const inner = message.slice(170);
    const started = Boolean(await get(`base:${b64(eph)}`));
    const existing = await get(key);
    if (existing && equal(existing.remoteIdentity, theirIdentity)) {
      try {
        const early = await ratchetDecrypt(existing, inner);
        await put(key, existing);
        return early;
      } catch (error) {
        if (started) throw error;
      }
    }
    if (started) throw new DecryptionError('a first message already used (a replay)');
    const spk = await get(`spk:${spkId}`);
    if (!spk) throw new DecryptionError(`unknown signed prekey ${spkId}`);
    const opk = opkId === 0xffffffff ? null : await get(`opk:${opkId}`);
    if (opkId !== 0xffffffff && !opk) throw new DecryptionError(`one-time prekey ${opkId} is used up (a replayed first message)`);
    const parts = [await dh(spk.priv, theirDh), await dh(identity.dhPriv, eph), await dh(spk.priv, eph)];
    if (opk) parts.push(await dh(opk, eph));
    const sk = await hkdf(cat(new Uint8Array(32).fill(0xff), ...parts), ZERO32, LABEL.x3dh, 32);
    const session = { rk: sk, dhsPriv: spk.priv, dhsPub: spk.pub, dhr: null, cks: null, ckr: null, ns: 0, nr: 0, pn: 0, skipped: [], ad: cat(theirIdentity, theirDh, identity.signPub, identity.dhPub), remoteIdentity: theirIdentity, pending: null };
    const plaintext = await ratchetDecrypt(session, inner);
    if (opk) await del(`opk:${opkId}`);
    await put(`base:${b64(eph)}`, true);
    await put(`peer:${address(from, dev)}`, theirIdentity);
    await put(key, session);
    return plaintext;
  }
  const session = await get(key);
  if (!session) throw new DecryptionError(`no session with ${from}'s device ${dev}`);
  const plaintext = await ratchetDecrypt(session, message);
  await put(key, session);
  return plaintext;
}

async function decryptGroup(conv, from, dev, message) {
  if (message.length < 10 + 16 + 64 || message[0] !== 1 || message[1] !== 3) throw new DecryptionError('not a sender-key message');
  const keyId = readU32(message, 2);
  const key = `sk-peer:${conv}|${address(from, dev)}`;
  const states = (await get(key)) ?? [];
  const state = states.find((s) => s.keyId === keyId);
  if (!state) throw new DecryptionError(`no sender key ${keyId} of ${from}'s device ${dev}`);
  const body = message.slice(0, message.length - 64);
  if (!(await verify(state.signPub, body, message.slice(message.length - 64)))) throw new DecryptionError('the sender-key signature does not verify');
  const iteration = readU32(message, 6);
  const s = structuredClone(state);
  let mk;
  if (iteration < s.iteration) {
    mk = s.skipped[iteration];
    if (!mk) throw new DecryptionError('a message already decrypted (a replay) or too old');
    delete s.skipped[iteration];
  } else {
    if (iteration - s.iteration > 25000) throw new DecryptionError('more than 25000 messages skipped');
    while (s.iteration < iteration) {
      const [next, k] = await kdfChain(s.chain);
      s.skipped[s.iteration++] = k;
      s.chain = next;
    }
    [s.chain, mk] = await kdfChain(s.chain);
    s.iteration++;
  }
  const [aes, nonce] = await messageKeys(mk, LABEL.senderKey);
  const plaintext = await open(aes, nonce, cat(body.slice(0, 10), te.encode(conv)), body.slice(10));
  Object.assign(state, s);
  await put(key, states);
  return plaintext;
}

/**
 * The text of a received event, decrypted with this device's keys (sender keys handed out are stored on the
 * way); null for a key hand-out. Throws DecryptionError; nothing changes then.
 */
export function openMessage(m, me, myDevice) {
  return serial(async () => {
    const identity = await get('identity');
    if (!identity) throw new DecryptionError('this browser has no keys');
    const e2ee = m.e2ee;
    let pairwise = null;
    const mine = (e2ee.to ?? []).find((e) => e.user === me && e.device === myDevice);
    if (mine) pairwise = unpad(await decryptPairwise(identity, m.from, m.dev, unb64(mine.ct)));
    if (pairwise?.skd) {
      const skd = pairwise.skd;
      if (skd.conv !== m.conv) throw new DecryptionError('a sender key for another conversation');
      const key = `sk-peer:${m.conv}|${address(m.from, m.dev)}`;
      const states = (await get(key)) ?? [];
      if (!states.some((s) => s.keyId === skd.id)) {
        states.unshift({ keyId: skd.id, iteration: skd.iteration, chain: unb64(skd.chain), signPub: unb64(skd.sign), skipped: {} });
        await put(key, states.slice(0, 4));
      }
    }
    if (e2ee.sk) return unpad(await decryptGroup(m.conv, m.from, m.dev, unb64(e2ee.sk))).body ?? null;
    if (m.kind === 'key') return null;
    if (!pairwise) throw new DecryptionError('no ciphertext for this device');
    return pairwise.body ?? null;
  });
}

/**
 * A new signed prekey to publish once the newest is a week old (older ones are kept: first messages made from an
 * older bundle may still come), else null.
 */
export function rotateSignedPrekey(now = Date.now()) {
  return serial(async () => {
    const identity = await get('identity');
    if (!identity) return null;
    const keys = await kv('readonly', (s) => s.getAllKeys());
    const newest = Math.max(0, ...keys.filter((k) => /^spk:\d+$/.test(k)).map((k) => Number(k.slice(4))));
    const current = newest ? await get(`spk:${newest}`) : null;
    if (current && now - (current.created ?? now) < 7 * 86_400_000) return null;
    const spk = await x25519Pair();
    const sig = await sign(identity.signPriv, spk.pub);
    await put(`spk:${newest + 1}`, { id: newest + 1, priv: spk.priv, pub: spk.pub, sig, created: now });
    return { signed_prekey: { id: newest + 1, key: b64(spk.pub), signature: b64(sig) } };
  });
}

/** More one-time prekeys to publish (after keys_low). */
export function moreOneTimeKeys(count) {
  return serial(async () => {
    const next = (await get('meta:next-opk')) ?? 101;
    const oneTime = [];
    for (let id = next; id < next + count; id++) {
      const k = await x25519Pair();
      await put(`opk:${id}`, k.priv);
      oneTime.push({ id, key: b64(k.pub) });
    }
    await put('meta:next-opk', next + count);
    return { one_time_prekeys: oneTime };
  });
}

/** Drops the session with a device: the next message starts a new one (a resend after a failure). */
export const resetSession = (user, device) => serial(() => del(`session:${address(user, device)}`));

async function digits(user, keys) {
  const k = cat(...keys);
  let h = new Uint8Array(await subtle.digest('SHA-512', cat(new Uint8Array([0, 0]), k, te.encode(user))));
  for (let i = 0; i < 5200; i++) h = new Uint8Array(await subtle.digest('SHA-512', cat(h, k)));
  let out = '';
  for (let chunk = 0; chunk < 6; chunk++) {
    let value = 0n;
    for (let b = 0; b < 5; b++) value = (value << 8n) | BigInt(h[chunk * 5 + b]);
    out += String(value % 100000n).padStart(5, '0');
  }
  return out;
}

/** The safety number of this user and a peer (docs/e2ee.md), or null before any session with the peer. */
export async function safetyNumber(me, myDevice, peer) {
  const keys = await kv('readonly', (s) => s.getAllKeys());
  const identitiesOf = async (user) => {
    const found = new Map();
    for (const key of keys) {
      const m = /^peer:(.+):(\d+)$/.exec(key);
      if (m && m[1] === user) found.set(Number(m[2]), await get(key));
    }
    return found;
  };
  const theirs = await identitiesOf(peer);
  if (!theirs.size) return null;
  const mine = await identitiesOf(me);
  mine.set(myDevice, (await get('identity')).signPub);
  const ordered = (map) => [...map.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  const a = await digits(me, ordered(mine));
  const b = await digits(peer, ordered(theirs));
  const all = a <= b ? a + b : b + a;
  return all.match(/.{5}/g).join(' ');
}

/** Kept text by (conversation, seq): a message key is used once. */
export const keepText = (conv, seq, text) => put(`text:${conv}|${seq}`, text);
export const keptText = (conv, seq) => get(`text:${conv}|${seq}`);
