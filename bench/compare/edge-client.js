// A Node client for the edge proxy, written from docs/PROTOCOL.md with npm's
// `ws` and `@msgpack/msgpack`: what the comparison runs against the proxy.
//
// Every frame is the MessagePack array `[1, {FrameName: {field: value,
// ...}}]` (shared-protocol/src/codec.rs writes and reads exactly that), one
// per binary WebSocket message from the client; this client says
// `Hello{batch: true}`, so a message from the proxy holds one frame or more,
// back to back (`decodeMulti`). One connection:
//   - sends `Hello{client_id, t, batch}` on open, waits for `Welcome` and the
//     `Snapshot` that follows it (no `resume`: rule 1 of the handshake);
//   - delivers each `Event` once and in order (`seq` is gap-free), applies
//     `Gap` and `Snapshot` as "Receiving" says, and acknowledges
//     cumulatively (`Ack{upto}`) every 32 events and after 100 ms of quiet;
//   - publishes with a strictly increasing `client_seq` (from 1), kind
//     `bench`, reliable; `Accepted{upto}` answers every number up to `upto`,
//     a `Rejected` one number (counted: a benchmark publish is never refused);
//   - answers the proxy's `Ping` with a `Pong` echoing it, and pings the
//     proxy every 10 s itself.
import WebSocket from 'ws';
import { Encoder, Decoder } from '@msgpack/msgpack';

const encoder = new Encoder();
const decoder = new Decoder();
const frame = (name, fields) => encoder.encode([1, { [name]: fields }]);

/// Cumulative ack at least every this many events (PROTOCOL.md: "Send at
/// least every 32 events or 100 ms of quiet").
const ACK_EVERY = 32;
const ACK_QUIET_MS = 100;
const PING_EVERY_MS = 10_000;

export class EdgeConnection {
  /// `onEvent(payload)` for every event of kind `bench`; `onAnswer()` when
  /// `answered` (publishes covered by an `Accepted`) moves.
  constructor(url, clientId, { onEvent = () => {}, onAnswer = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onAnswer = onAnswer;
    this.lastSeq = 0;
    this.ackedUpto = 0;
    this.lastEventAt = 0;
    this.lastPingAt = Date.now();
    this.nonce = 0;
    this.clientSeq = 0;
    this.answered = 0;
    this.rejected = 0;
    this.gaps = 0;
    this.holes = 0;
    this.duplicates = 0;
    this.window = 1024;
    this.error = null;
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.started = false;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = () => { this.started = true; resolve(); };
      this.ws.on('error', (e) => (this.started ? console.error(`edge-proxy connection: ${e.message}`) : reject(e)));
      this.ws.on('close', (code) => {
        if (this.started) console.error(`edge-proxy closed a session (${code}) mid-run: ${this.error ?? ''}`);
        else reject(new Error(`closed with ${code} before the session began: ${this.error ?? ''}`));
      });
    });
    this.ws.on('open', () => this.send('Hello', { client_id: clientId, t: Date.now(), batch: true }));
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      for (const frame of decoder.decodeMulti(data)) this.receive(frame);
    });
  }

  send(name, fields) {
    this.ws.send(frame(name, fields));
  }

  receive(message) {
    if (!Array.isArray(message) || message[0] !== 1) throw new Error(`not a version 1 frame: ${JSON.stringify(message)}`);
    const body = message[1];
    let f;
    if ((f = body.Event) !== undefined) {
      if (f.seq <= this.lastSeq) { this.duplicates++; return; }
      // A hole never happens on a live session (seq is gap-free); counted,
      // not held, since nothing here reconnects.
      if (f.seq !== this.lastSeq + 1) this.holes++;
      this.lastSeq = f.seq;
      this.lastEventAt = Date.now();
      if (f.kind === 'bench') this.onEvent(f.payload);
      if (this.lastSeq - this.ackedUpto >= ACK_EVERY) this.ack();
    } else if ((f = body.Accepted) !== undefined) {
      if (f.upto > this.answered) { this.answered = f.upto; this.onAnswer(); }
    } else if ((f = body.Ping) !== undefined) {
      this.send('Pong', { nonce: f.nonce, t: f.t });
    } else if ((f = body.Pong) !== undefined) {
      // our own ping answered: the link is alive
    } else if ((f = body.Snapshot) !== undefined) {
      if (f.upto >= this.lastSeq) this.lastSeq = f.upto;
      this.resolveReady();
    } else if ((f = body.Gap) !== undefined) {
      this.gaps++;
      if (f.to > this.lastSeq) this.lastSeq = f.to;
    } else if ((f = body.Welcome) !== undefined) {
      this.window = f.limits?.publish_window ?? 1024;
    } else if ((f = body.Rejected) !== undefined) {
      if (this.rejected++ === 0) console.error(`edge-proxy rejected publish ${f.client_seq}: ${f.reason}`);
    } else if ((f = body.Error) !== undefined) {
      this.error = `${f.code}: ${f.message}`;
      console.error(`edge-proxy error: ${this.error}`);
    } else if ((f = body.Drain) !== undefined) {
      this.error = `drain (${f.reason})`;
    } else {
      throw new Error(`unknown frame ${Object.keys(body)}`);
    }
  }

  ack() {
    if (this.lastSeq > this.ackedUpto) {
      this.ackedUpto = this.lastSeq;
      this.send('Ack', { upto: this.lastSeq });
    }
  }

  /// The timers, driven by one interval per thread for all its connections:
  /// the quiet-time ack and the client's own ping.
  tick(now) {
    if (this.lastSeq > this.ackedUpto && now - this.lastEventAt >= ACK_QUIET_MS) this.ack();
    if (now - this.lastPingAt >= PING_EVERY_MS) {
      this.lastPingAt = now;
      this.nonce = (this.nonce + 1) >>> 0;
      this.send('Ping', { nonce: this.nonce, t: now });
    }
  }

  /// Publishes one reliable `bench` event; returns its client_seq.
  publish(payload) {
    this.clientSeq++;
    this.send('Publish', { client_seq: this.clientSeq, kind: 'bench', payload, delivery: 'reliable' });
    return this.clientSeq;
  }

  close() {
    this.ws.terminate();
  }
}

/// Drives the timers of `connections` (quiet acks, pings) until stopped.
export function startTicks(connections) {
  const timer = setInterval(() => {
    const now = Date.now();
    for (const c of connections) c.tick(now);
  }, ACK_QUIET_MS / 2);
  return () => clearInterval(timer);
}
