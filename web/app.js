// The browser client: sign-in, the conversation list, a chat with ticks, typing, presence, history, replies,
// edits, deletes and groups. Everything a user wrote is put on the page with textContent, never as HTML.

import { api, ApiError, Connection } from './net.js';
import { loadSession, saveSession, clearSession } from './db.js';
import * as e2ee from './e2ee.js';

const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

let session = null; // { user, device, token }
let connection = null;
const conversations = new Map(); // conv → { conv, kind, name, lastSeq, unread, last }
let open = null; // { conv, oldest, othersDelivered, othersRead, messages: Map(seq → frame), typing }
let replyTo = null;
let editing = null;

const directConv = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);
const peerOf = (conv) => conv.startsWith('dm:') ? conv.slice(3).split(':').find((u) => u !== session.user) ?? session.user : null;
const time = (ts) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

// ── sign-in ──────────────────────────────────────────────────────────────────────────────────────────────────

async function signIn(register) {
  const user = $('username').value.trim().toLowerCase();
  const password = $('password').value;
  $('signin-error').textContent = '';
  try {
    if (register) await api('POST', '/v1/accounts', { body: { user, password } });
    const linked = await api('POST', '/v1/devices', { body: { user, password, name: `browser (${navigator.platform || 'web'})` } });
    session = { user: linked.user, device: linked.device, token: linked.token };
    await saveSession(session);
    $('password').value = '';
    await start();
  } catch (error) {
    $('signin-error').textContent = error instanceof ApiError ? error.message : String(error);
  }
}

async function logOut() {
  try {
    await api('DELETE', `/v1/devices/${session.device}`, { token: session.token });
  } catch {
    // unlinked already, or the server is away: forget this browser's sign-in anyway
  }
  connection?.stop();
  await clearSession();
  await e2ee.forgetAll();
  location.reload();
}

// ── the app ──────────────────────────────────────────────────────────────────────────────────────────────────

let arrivals = Promise.resolve();

async function topUpKeys() {
  try {
    await api('PUT', '/v1/devices/current/keys', { token: session.token, body: await e2ee.moreOneTimeKeys(100) });
  } catch {
    // told again at the next fetch that finds them low
  }
}

const resent = new Set();

/** A device could not decrypt one of this browser's messages: sent to it alone again, on a new session. */
async function resendTo(failed) {
  const key = `${failed.conv}|${failed.seq}|${failed.user}|${failed.device}`;
  if (failed.dev !== session.device || resent.has(key)) return;
  resent.add(key);
  const text = await e2ee.keptText(failed.conv, failed.seq);
  if (text === undefined) return;
  try {
    await e2ee.resetSession(failed.user, failed.device);
    const payload = await e2ee.sealDirect([{ user: failed.user, device: failed.device }], text, fetchBundles);
    connection.raw({ t: 'resend', conv: failed.conv, seq: failed.seq, user: failed.user, device: failed.device, e2ee: payload });
  } catch {
    // it asks again if it sees the message fail again
  }
}

/** A message sent again for this browser: decrypted, kept, and shown in place of the failure. */
async function onResend(r) {
  if (await e2ee.keptText(r.conv, r.seq) !== undefined) return;
  try {
    const text = await e2ee.openMessage({ conv: r.conv, seq: r.seq, from: r.from, dev: r.dev, kind: 'text', e2ee: r.e2ee }, session.user, session.device);
    if (text === null) return;
    await e2ee.keepText(r.conv, r.seq, text);
    const shown = open?.conv === r.conv && open.messages.get(r.seq);
    if (shown) {
      shown.body = text;
      shown.undecryptable = null;
      render(shown);
    }
  } catch {
    // not for this device
  }
}

async function showSafetyNumber() {
  const peer = open && peerOf(open.conv);
  if (!peer) return;
  const number = await e2ee.safetyNumber(session.user, session.device, peer);
  $('safety').hidden = false;
  $('safety').textContent = number
    ? `Safety number with ${peer}: ${number}. Compare it with theirs: the same on both sides means nobody is in between.`
    : `No encrypted session with ${peer} yet: send a message first.`;
}

async function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = session.user;
  connection = new Connection(session.token);
  connection.addEventListener('state', (e) => showState(e.detail));
  connection.addEventListener('stopped', () => showState('stopped'));
  connection.addEventListener('welcome', () => { if (open) watchPeer(); });
  connection.addEventListener('msg', (e) => {
    arrivals = arrivals.then(async () => {
      await readable(e.detail);
      // Could not decrypt: the sender is asked, without content, to send it again on a new session.
      if (e.detail.undecryptable) connection.raw({ t: 'decrypt_failed', conv: e.detail.conv, seq: e.detail.seq });
      onMessage(e.detail);
    }).catch(() => {});
  });
  connection.addEventListener('receipt', (e) => onReceipt(e.detail));
  connection.addEventListener('typing', (e) => onTyping(e.detail));
  connection.addEventListener('presence', (e) => onPresence(e.detail));
  connection.addEventListener('keys_low', () => topUpKeys());
  connection.addEventListener('decrypt_failed', (e) => resendTo(e.detail));
  connection.addEventListener('resend', (e) => { arrivals = arrivals.then(() => onResend(e.detail)).catch(() => {}); });
  connection.start();
  await publishKeys();
  await loadConversations();
}

/** This browser's end-to-end keys, made and published the first time (docs/e2ee.md). */
async function publishKeys() {
  try {
    const upload = await e2ee.newKeys() ?? await e2ee.rotateSignedPrekey();
    if (upload) await api('PUT', '/v1/devices/current/keys', { token: session.token, body: upload });
  } catch (error) {
    $('side-error').textContent = `End-to-end keys: ${error.message}`;
  }
}

const fetchBundles = (user, device) =>
  api('GET', `/v1/users/${encodeURIComponent(user)}/keys${device ? `?device=${device}` : ''}`, { token: session.token });

const knownDevices = new Map(); // conv → the devices its sends were last made for

/**
 * Sends (or edits) a text encrypted for every device of the conversation; when the server says the devices
 * changed, again for the ones it lists, with the same cid. A device without keys: sent readable, and said so.
 */
async function writeText(frame, text) {
  const conv = frame.conv;
  frame.cid ??= crypto.randomUUID();
  let devices = knownDevices.get(conv) ?? [];
  for (let attempt = 0; ; attempt++) {
    let sealed;
    try {
      sealed = conv.startsWith('grp:') ? await e2ee.sealGroup(conv, devices, text, fetchBundles) : { keys: [], e2ee: await e2ee.sealDirect(devices, text, fetchBundles) };
    } catch (error) {
      if (error.code !== 'no_keys') throw error;
      $('chat-error').textContent = `${error.message}: sent without end-to-end encryption`;
      return connection.write({ ...frame, body: text });
    }
    for (const handout of sealed.keys) await connection.write({ t: 'send', conv, kind: 'key', e2ee: handout });
    try {
      const ack = await connection.write({ ...frame, e2ee: sealed.e2ee });
      await e2ee.keepText(conv, ack.seq, text);
      return ack;
    } catch (error) {
      if (error.code !== 'devices_changed' || attempt >= 4) throw error;
      devices = error.recipients ?? [];
      knownDevices.set(conv, devices);
    }
  }
}

/** An event's text: a plain body, or an encrypted one's, kept or decrypted with this browser's keys. */
async function readable(m) {
  if (!m.e2ee) return;
  const kept = await e2ee.keptText(m.conv, m.seq);
  if (kept !== undefined) {
    m.body = kept;
    return;
  }
  try {
    const text = await e2ee.openMessage(m, session.user, session.device);
    if (text !== null) {
      m.body = text;
      await e2ee.keepText(m.conv, m.seq, text);
    }
  } catch (error) {
    // The same event may have come two ways at once (history and the socket): the other one kept its text.
    const keptMeanwhile = await e2ee.keptText(m.conv, m.seq);
    if (keptMeanwhile !== undefined) m.body = keptMeanwhile;
    else m.undecryptable = error.message;
  }
}

function showState(state) {
  const text = { connecting: 'Connecting…', live: 'Online', reconnecting: 'Reconnecting…', stopped: 'Signed out elsewhere' }[state] ?? state;
  $('connection').textContent = text;
  $('connection').classList.toggle('offline', state !== 'live');
}

async function loadConversations() {
  try {
    const list = await api('GET', '/v1/conversations', { token: session.token });
    for (const c of list) {
      conversations.set(c.conv, { conv: c.conv, kind: c.kind, name: c.name ?? c.conv, lastSeq: c.last_seq, unread: c.unread, last: '' });
    }
    renderConversations();
    await Promise.all(list.map(async (c) => {
      const page = await api('GET', `/v1/conversations/${encodeURIComponent(c.conv)}/messages?limit=1`, { token: session.token });
      const last = page.messages[0];
      if (last?.e2ee) last.body = await e2ee.keptText(last.conv, last.seq);
      if (last) conversations.get(c.conv).last = preview(last);
    }));
    renderConversations();
  } catch (error) {
    $('side-error').textContent = error.message;
  }
}

function preview(m) {
  if (m.kind === 'system') return systemText(m);
  if (m.kind === 'delete') return 'Message deleted';
  const text = m.body ?? (m.e2ee ? '🔒 Encrypted message' : '');
  return `${m.from === session.user ? 'You' : m.from}: ${text}`;
}

function renderConversations() {
  const list = $('conversations');
  list.replaceChildren();
  const sorted = [...conversations.values()].sort((a, b) => (b.touched ?? 0) - (a.touched ?? 0) || b.lastSeq - a.lastSeq);
  for (const c of sorted) {
    const item = el('li');
    item.setAttribute('aria-current', String(open?.conv === c.conv));
    item.tabIndex = 0;
    item.append(el('span', 'name', c.name));
    const unread = el('span', 'unread', String(c.unread));
    unread.hidden = !c.unread;
    item.append(unread, el('span', 'last', c.last));
    item.setAttribute('aria-label', `${c.name}${c.unread ? `, ${c.unread} unread` : ''}${c.last ? `, ${c.last}` : ''}`);
    item.addEventListener('click', () => openConversation(c.conv));
    item.addEventListener('keydown', (e) => { if (e.key === 'Enter') openConversation(c.conv); });
    list.append(item);
  }
}

function touch(conv, patch) {
  const c = conversations.get(conv) ?? { conv, kind: conv.startsWith('grp:') ? 'group' : 'direct', name: peerOf(conv) ?? conv, lastSeq: 0, unread: 0, last: '' };
  Object.assign(c, patch, { touched: Date.now() });
  conversations.set(conv, c);
  renderConversations();
}

// ── a conversation ───────────────────────────────────────────────────────────────────────────────────────────

async function openConversation(conv) {
  $('chat-error').textContent = '';
  const c = conversations.get(conv) ?? { name: peerOf(conv) ?? conv };
  open = { conv, oldest: Infinity, othersDelivered: 0, othersRead: 0, messages: new Map(), typingUntil: 0 };
  replyTo = null;
  editing = null;
  $('replying').hidden = true;
  $('chat').hidden = false;
  $('app').classList.add('chatting');
  $('chat-title').textContent = c.name;
  $('chat-status').textContent = '';
  $('messages').replaceChildren();
  $('members').hidden = !conv.startsWith('grp:');
  $('verify').hidden = conv.startsWith('grp:');
  $('safety').hidden = true;
  $('members-form').hidden = true;
  try {
    const page = await api('GET', `/v1/conversations/${encodeURIComponent(conv)}/messages?limit=30`, { token: session.token });
    if (open?.conv !== conv) return;
    const newest = page.messages[0];
    if (newest) {
      const receipts = await api('GET', `/v1/conversations/${encodeURIComponent(conv)}/receipts?seq=${newest.seq}`, { token: session.token });
      const others = receipts.filter((r) => r.user !== session.user);
      if (others.length) {
        open.othersDelivered = Math.min(...others.map((r) => r.delivered));
        open.othersRead = Math.min(...others.map((r) => r.read));
      }
    }
    for (const m of [...page.messages].reverse()) {
      await readable(m);
      show(m, false);
    }
    $('older').hidden = !page.more;
    scrollDown();
    markRead();
  } catch (error) {
    $('chat-error').textContent = error.message;
  }
  touch(conv, { unread: 0 });
  watchPeer();
  $('message').focus();
}

function watchPeer() {
  const peer = open && peerOf(open.conv);
  if (peer) connection.raw({ t: 'watch', users: [peer] });
}

async function older() {
  if (!open || open.oldest === Infinity) return;
  const conv = open.conv;
  const page = await api('GET', `/v1/conversations/${encodeURIComponent(conv)}/messages?limit=30&before=${open.oldest}`, { token: session.token });
  if (open?.conv !== conv) return;
  const list = $('messages');
  const before = list.scrollHeight - list.scrollTop;
  for (const m of page.messages) {
    await readable(m);
    show(m, true);
  }
  $('older').hidden = !page.more;
  list.scrollTop = list.scrollHeight - before;
}

function systemText(m) {
  const s = m.system ?? {};
  const users = (s.users ?? []).join(', ');
  switch (s.op) {
    case 'created': return `${m.from} created the group "${s.name}"`;
    case 'added': return `${m.from} added ${users}`;
    case 'removed': return `${m.from} removed ${users}`;
    case 'left': return `${m.from} left`;
    case 'renamed': return `${m.from} renamed the group to "${s.name}"`;
    case 'role': return `${m.from} made ${users} ${s.role}`;
    case 'identity_changed': return `${m.from}'s security keys changed`;
    default: return s.op ?? 'system';
  }
}

/** Puts one event on the page (edits and deletes change their target); at the top when older. */
function show(m, atTop) {
  open.oldest = Math.min(open.oldest, m.seq);
  if (m.kind === 'edit' || m.kind === 'delete') {
    const target = open.messages.get(m.target);
    if (target) {
      if (m.kind === 'edit') target.body = m.body ?? target.body;
      target.deleted = m.kind === 'delete';
      target.edited = m.kind === 'edit';
      render(target);
    }
    return;
  }
  if (m.kind === 'key') return; // sender keys handed out in a group: nothing to show
  if (open.messages.get(m.seq)?.node?.isConnected) return; // already shown: it came live while the page loaded
  open.messages.set(m.seq, m);
  const item = el('li');
  item.dataset.seq = String(m.seq);
  m.node = item;
  render(m);
  if (atTop) {
    $('messages').prepend(item);
    return;
  }
  // In seq order, whichever way it came (history and live can cross while a conversation opens).
  const after = [...$('messages').children].find((li) => Number(li.dataset.seq) > m.seq);
  $('messages').insertBefore(item, after ?? null);
}

function tickState(m) {
  if (m.pending) return 'sending';
  if (m.seq <= open.othersRead) return 'read';
  if (m.seq <= open.othersDelivered) return 'delivered';
  return 'sent';
}

function render(m) {
  const item = m.node;
  item.replaceChildren();
  const mine = m.from === session.user;
  item.className = m.kind === 'system' ? 'system' : mine ? 'mine' : '';
  if (m.kind === 'system') {
    item.textContent = systemText(m);
    item.setAttribute('aria-label', systemText(m));
    return;
  }
  if (open.conv.startsWith('grp:') && !mine) item.append(el('span', 'from', m.from));
  if (m.reply_to && open.messages.get(m.reply_to)) {
    const quoted = open.messages.get(m.reply_to);
    item.append(el('span', 'quote', `${quoted.from}: ${quoted.deleted ? 'deleted' : quoted.body ?? ''}`));
  }
  const text = m.deleted ? 'This message was deleted' : m.body ?? (m.undecryptable ? `Could not be decrypted: ${m.undecryptable}` : m.e2ee ? '🔒 Encrypted message (sent before this browser was signed in)' : '');
  item.append(el('span', 'text', text));
  const meta = el('span', 'meta', `${m.edited ? 'edited ' : ''}${time(m.ts)}`);
  let state = '';
  if (mine && !m.deleted) {
    state = tickState(m);
    const tick = el('span', `tick ${state}`, { sending: ' 🕓', sent: ' ✓', delivered: ' ✓✓', read: ' ✓✓' }[state]);
    tick.setAttribute('aria-hidden', 'true');
    meta.append(tick);
  }
  item.append(meta);
  if (!m.deleted && !m.pending) {
    const tools = el('span', 'tools');
    const reply = el('button', '', 'Reply');
    reply.type = 'button';
    reply.addEventListener('click', () => startReply(m));
    tools.append(reply);
    if (mine) {
      const edit = el('button', '', 'Edit');
      edit.type = 'button';
      edit.addEventListener('click', () => startEdit(m));
      const remove = el('button', '', 'Delete');
      remove.type = 'button';
      remove.addEventListener('click', () => deleteMessage(m));
      tools.append(edit, remove);
    }
    item.append(tools);
  }
  item.setAttribute('aria-label', `${mine ? 'You' : m.from}: ${text}, ${time(m.ts)}${state ? `, ${state}` : ''}`);
}

function rerenderTicks() {
  for (const m of open?.messages.values() ?? []) if (m.from === session.user && m.node) render(m);
}

function scrollDown() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function markRead() {
  if (!open || document.visibilityState !== 'visible') return;
  const newest = [...open.messages.values()].filter((m) => m.from !== session.user).reduce((max, m) => Math.max(max, m.seq), 0);
  if (newest > (open.readSent ?? 0)) {
    open.readSent = newest;
    connection.raw({ t: 'read', conv: open.conv, seq: newest });
  }
}

// ── what arrives ─────────────────────────────────────────────────────────────────────────────────────────────

function onMessage(m) {
  const isOpen = open?.conv === m.conv;
  if (isOpen && !open.messages.has(m.seq)) {
    show(m, false);
    scrollDown();
    markRead();
    if (m.from !== session.user) {
      open.typingUntil = 0;
      showStatus();
    }
    if (!open.presence) watchPeer(); // a new chat: presence may be watched once the two share a conversation
  }
  if (m.kind === 'key') return;
  const c = conversations.get(m.conv);
  touch(m.conv, {
    lastSeq: Math.max(c?.lastSeq ?? 0, m.seq),
    last: m.kind === 'edit' ? c?.last ?? '' : preview(m),
    unread: isOpen ? 0 : (c?.unread ?? 0) + (m.from !== session.user && (m.kind === 'text' || m.kind === 'media') ? 1 : 0),
    name: c?.name ?? (m.kind === 'system' && m.system?.op === 'created' ? m.system.name : peerOf(m.conv) ?? m.conv),
  });
}

function onReceipt(r) {
  if (open?.conv !== r.conv || r.user === session.user) return;
  // A group's aggregate (user "*") moves when every member got there; a direct chat's, when the other did.
  if (r.kind === 'delivered') open.othersDelivered = Math.max(open.othersDelivered, r.seq);
  if (r.kind === 'read') {
    open.othersRead = Math.max(open.othersRead, r.seq);
    open.othersDelivered = Math.max(open.othersDelivered, r.seq);
  }
  rerenderTicks();
}

function onTyping(t) {
  if (open?.conv !== t.conv || t.user === session.user) return;
  open.typingUntil = t.on ? Date.now() + 5000 : 0;
  open.typist = t.user;
  showStatus();
  if (t.on) setTimeout(showStatus, 5100);
}

function onPresence(p) {
  if (!open || peerOf(open.conv) !== p.user) return;
  open.presence = p.online ? 'online' : p.last_seen ? `last seen ${new Date(p.last_seen).toLocaleString()}` : 'offline';
  showStatus();
}

function showStatus() {
  if (!open) return;
  const typing = open.typingUntil > Date.now();
  $('chat-status').textContent = typing ? (open.conv.startsWith('grp:') ? `${open.typist} is typing…` : 'typing…') : open.presence ?? '';
}

// ── what is sent ─────────────────────────────────────────────────────────────────────────────────────────────

async function send(event) {
  event.preventDefault();
  const text = $('message').value.trim();
  if (!open || !text) return;
  $('message').value = '';
  stopTyping();
  const conv = open.conv;
  try {
    if (editing) {
      const target = editing;
      editing = null;
      $('replying').hidden = true;
      await writeText({ t: 'edit', conv, target: target.seq }, text);
      return;
    }
    const frame = { t: 'send', conv, kind: 'text', cid: crypto.randomUUID() };
    if (replyTo) frame.reply_to = replyTo.seq;
    replyTo = null;
    $('replying').hidden = true;
    const local = { conv, seq: Number.MAX_SAFE_INTEGER - open.messages.size, from: session.user, kind: 'text', body: text, ts: Date.now(), pending: true, reply_to: frame.reply_to };
    show(local, false);
    scrollDown();
    const ack = await writeText(frame, text);
    if (open?.conv === conv) {
      open.messages.delete(local.seq);
      Object.assign(local, { seq: ack.seq, id: ack.id, ts: ack.ts, pending: false });
      local.node.dataset.seq = String(ack.seq);
      open.messages.set(ack.seq, local);
      render(local);
    }
    touch(conv, { lastSeq: ack.seq, last: `You: ${text}` });
    if (open?.conv === conv && !open.presence) watchPeer();
  } catch (error) {
    $('chat-error').textContent = `Not sent: ${error.message}`;
  }
}

function startReply(m) {
  replyTo = m;
  editing = null;
  $('replying').hidden = false;
  $('replying-text').textContent = `Replying to ${m.from}: ${m.body ?? ''}`;
  $('message').focus();
}

function startEdit(m) {
  editing = m;
  replyTo = null;
  $('replying').hidden = false;
  $('replying-text').textContent = 'Editing your message';
  $('message').value = m.body ?? '';
  $('message').focus();
}

async function deleteMessage(m) {
  try {
    await connection.write({ t: 'delete', conv: open.conv, target: m.seq });
  } catch (error) {
    $('chat-error').textContent = error.message;
  }
}

let typingSent = 0;
let typingTimer = null;

function onInput() {
  if (!open) return;
  if (Date.now() - typingSent > 3000) {
    typingSent = Date.now();
    connection.raw({ t: 'typing', conv: open.conv, on: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingSent && open) connection.raw({ t: 'typing', conv: open.conv, on: false });
  typingSent = 0;
}

async function startChat(event) {
  event.preventDefault();
  const peer = $('chat-with').value.trim().toLowerCase();
  if (!peer) return;
  $('side-error').textContent = '';
  try {
    await api('GET', `/v1/presence/${encodeURIComponent(peer)}`, { token: session.token }).catch((error) => {
      if (error.code === 'not_found') throw error; // unknown user; "forbidden" only says there is no chat yet
    });
    const conv = directConv(session.user, peer);
    touch(conv, { name: peer });
    $('new-chat-form').hidden = true;
    $('chat-with').value = '';
    await openConversation(conv);
  } catch (error) {
    $('side-error').textContent = error.code === 'not_found' ? `No user called ${peer}` : error.message;
  }
}

async function createGroup(event) {
  event.preventDefault();
  const name = $('group-name').value.trim();
  const members = $('group-members').value.split(/[\s,]+/).map((u) => u.trim().toLowerCase()).filter(Boolean);
  $('side-error').textContent = '';
  try {
    const group = await api('POST', '/v1/groups', { token: session.token, body: { name, members } });
    touch(group.conv, { name: group.name, kind: 'group' });
    $('new-group-form').hidden = true;
    $('group-name').value = '';
    $('group-members').value = '';
    await openConversation(group.conv);
  } catch (error) {
    $('side-error').textContent = error.message;
  }
}

async function showMembers() {
  const form = $('members-form');
  form.hidden = !form.hidden;
  if (form.hidden) return;
  try {
    const group = await api('GET', `/v1/groups/${encodeURIComponent(open.conv)}`, { token: session.token });
    $('member-list').textContent = group.members.map((m) => (m.role === 'admin' ? `${m.user} (admin)` : m.user)).join(', ');
  } catch (error) {
    $('chat-error').textContent = error.message;
  }
}

async function changeMember(add) {
  const user = $('member-name').value.trim().toLowerCase();
  if (!user || !open) return;
  try {
    if (add) await api('POST', `/v1/groups/${encodeURIComponent(open.conv)}/members`, { token: session.token, body: { users: [user] } });
    else await api('DELETE', `/v1/groups/${encodeURIComponent(open.conv)}/members/${encodeURIComponent(user)}`, { token: session.token });
    $('member-name').value = '';
    $('members-form').hidden = true;
    await showMembers();
  } catch (error) {
    $('chat-error').textContent = error.message;
  }
}

// ── push ─────────────────────────────────────────────────────────────────────────────────────────────────────

/** Registers the service worker (the page works without it). */
async function registerWorker() {
  if (!('serviceWorker' in navigator)) return null;
  try {
    return await navigator.serviceWorker.register('sw.js', { scope: '/' });
  } catch {
    return null;
  }
}

/** Asks for notifications and registers this browser for Web Push with the server's VAPID key. */
async function enableNotifications() {
  $('side-error').textContent = '';
  try {
    if (await Notification.requestPermission() !== 'granted') throw new Error('notifications are not allowed in this browser');
    const registration = await registerWorker() ?? (() => { throw new Error('this browser has no service workers'); })();
    await navigator.serviceWorker.ready;
    const { publicKey } = await api('GET', '/v1/push/vapid');
    const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: e2ee.unb64(publicKey) });
    const { endpoint, keys } = subscription.toJSON();
    await api('PUT', '/v1/devices/current/push', { token: session.token, body: { kind: 'webpush', endpoint, keys } });
    $('notifications').textContent = 'Notifications on';
  } catch (error) {
    $('side-error').textContent = `Notifications: ${error.message}`;
  }
}

// ── wiring ───────────────────────────────────────────────────────────────────────────────────────────────────

$('signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn(false); });
$('register').addEventListener('click', () => signIn(true));
$('logout').addEventListener('click', logOut);
$('notifications').addEventListener('click', enableNotifications);
$('new-chat').addEventListener('click', () => { $('new-chat-form').hidden = !$('new-chat-form').hidden; $('new-group-form').hidden = true; $('chat-with').focus(); });
$('new-group').addEventListener('click', () => { $('new-group-form').hidden = !$('new-group-form').hidden; $('new-chat-form').hidden = true; $('group-name').focus(); });
$('new-chat-form').addEventListener('submit', startChat);
$('new-group-form').addEventListener('submit', createGroup);
$('composer').addEventListener('submit', send);
$('message').addEventListener('input', onInput);
$('message').addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('composer').requestSubmit(); } });
$('cancel-reply').addEventListener('click', () => { replyTo = null; editing = null; $('replying').hidden = true; });
$('older').addEventListener('click', older);
$('back').addEventListener('click', () => { $('app').classList.remove('chatting'); open = null; renderConversations(); });
$('members').addEventListener('click', showMembers);
$('verify').addEventListener('click', showSafetyNumber);
$('add-member').addEventListener('click', () => changeMember(true));
$('remove-member').addEventListener('click', () => changeMember(false));
document.addEventListener('visibilitychange', markRead);

registerWorker();
session = await loadSession();
if (session) {
  await start();
} else {
  $('signin').hidden = false;
}
