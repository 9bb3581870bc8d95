// The server, seen from the page: the HTTP API and one WebSocket that reconnects by itself.

/** An error the server answered, with its protocol code. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Calls the HTTP API; the body and the answer are JSON. Throws ApiError with the server's code. */
export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError('unavailable', 'the server cannot be reached', 0);
  }
  const text = await response.text();
  const data = text ? safeJson(text) : null;
  if (!response.ok) {
    throw new ApiError(data?.error ?? data?.code ?? 'internal', data?.message ?? `HTTP ${response.status}`, response.status);
  }
  return data;
}

function safeJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

/**
 * One WebSocket per signed-in browser: hello with the token, every unacked send again after each welcome (same
 * cid), events handed over once per (conversation, seq), a cumulative recv for what was shown, pings, and a
 * jittered backoff between attempts. States: connecting, live, reconnecting, stopped.
 */
export class Connection extends EventTarget {
  constructor(token) {
    super();
    this.token = token;
    this.state = 'connecting';
    this.pending = new Map(); // cid → { frame, resolve, reject }
    this.lastSeq = new Map(); // conv → highest seq handed over
    this.recvDue = new Map(); // conv → seq to acknowledge
    this.attempt = 0;
    this.heartbeat = 30;
    this.stopped = false;
    this.recvTimer = setInterval(() => this.flushRecv(), 100);
  }

  start() {
    if (this.stopped) return;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ t: 'hello', v: 1, token: this.token }));
    socket.onmessage = (event) => this.onFrame(JSON.parse(event.data));
    socket.onclose = (event) => this.onClose(event.code);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.recvTimer);
    clearInterval(this.pingTimer);
    this.socket?.close(1000, 'bye');
    this.setState('stopped');
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  onClose(code) {
    clearInterval(this.pingTimer);
    if (this.stopped) return;
    if (code === 1008 || code === 4001) {
      // The token was refused or this browser's device was unlinked, or another tab of it took over.
      this.stopped = true;
      this.setState('stopped');
      this.dispatchEvent(new CustomEvent('stopped', { detail: code }));
      return;
    }
    this.setState('reconnecting');
    const bound = Math.min(30_000, 250 * 2 ** this.attempt++);
    setTimeout(() => this.start(), Math.random() * bound);
  }

  onFrame(frame) {
    switch (frame.t) {
      case 'welcome':
        this.user = frame.user;
        this.device = frame.device;
        this.heartbeat = Math.max(1, frame.heartbeat ?? 30);
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.raw({ t: 'ping' }), this.heartbeat * 500);
        for (const { frame: pending } of this.pending.values()) this.raw(pending);
        this.dispatchEvent(new CustomEvent('welcome', { detail: frame }));
        break;
      case 'live':
        this.attempt = 0;
        this.setState('live');
        break;
      case 'ack': {
        const waiting = this.pending.get(frame.cid);
        this.pending.delete(frame.cid);
        this.see(frame.conv, frame.seq, false);
        waiting?.resolve(frame);
        break;
      }
      case 'error': {
        const waiting = frame.ref && this.pending.get(frame.ref);
        if (waiting && !['rate_limited', 'unavailable', 'internal'].includes(frame.code)) {
          this.pending.delete(frame.ref);
          const error = new ApiError(frame.code, frame.message, 0);
          error.recipients = frame.recipients; // with devices_changed: the devices to encrypt for
          waiting.reject(error);
        } else if (waiting) {
          setTimeout(() => this.raw(waiting.frame), frame.retry_after ?? 1000);
        } else {
          this.dispatchEvent(new CustomEvent('servererror', { detail: frame }));
        }
        break;
      }
      case 'msg':
        if ((this.lastSeq.get(frame.conv) ?? 0) >= frame.seq) {
          this.recvDue.set(frame.conv, Math.max(this.recvDue.get(frame.conv) ?? 0, this.lastSeq.get(frame.conv)));
          return; // a repeat
        }
        this.see(frame.conv, frame.seq, true);
        this.dispatchEvent(new CustomEvent('msg', { detail: frame }));
        break;
      case 'receipt':
      case 'typing':
      case 'presence':
      case 'keys_low':
      case 'decrypt_failed':
      case 'resend':
        this.dispatchEvent(new CustomEvent(frame.t, { detail: frame }));
        break;
    }
  }

  see(conv, seq, acknowledge) {
    if ((this.lastSeq.get(conv) ?? 0) < seq) this.lastSeq.set(conv, seq);
    if (acknowledge) this.recvDue.set(conv, Math.max(this.recvDue.get(conv) ?? 0, seq));
  }

  flushRecv() {
    if (this.socket?.readyState !== WebSocket.OPEN) return;
    for (const [conv, seq] of this.recvDue) this.raw({ t: 'recv', conv, seq });
    this.recvDue.clear();
  }

  raw(frame) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  /** A send, edit or delete: resolves with the ack once the server made it durable; resent after reconnects. */
  write(frame) {
    frame.cid ??= crypto.randomUUID();
    return new Promise((resolve, reject) => {
      this.pending.set(frame.cid, { frame, resolve, reject });
      this.raw(frame);
    });
  }
}
