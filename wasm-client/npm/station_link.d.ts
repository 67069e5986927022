/* station-link: the browser client of a station's edge proxy.
 * Hand-written (wasm-bindgen's own declarations say `any` and `Function`);
 * needs only the `dom` and `es2020` libs. The package README lists every
 * option, method and event. */

/** A JSON-like value: what `send` takes and what events carry. */
export type Payload =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | Payload[]
  | { [key: string]: Payload };

/** What `send` accepts (a `Map` or an `ArrayBuffer` travel too). */
export type SendPayload =
  | Payload
  | undefined
  | ArrayBuffer
  | Map<SendPayload, SendPayload>
  | SendPayload[]
  | { [key: string]: SendPayload };

export type Profile = 'stable' | 'unstable' | 'lowBandwidth';
export type Delivery = 'reliable' | 'volatile';
export type LinkState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'stale' | 'failed';
export type Access = 'read' | 'control';

/** `new Link(url, options)`. An unknown option or a wrong type throws. */
export interface LinkOptions {
  /** Backoff profile; absent: 1 s .. 30 s with no attempt limit. */
  profile?: Profile | null;
  /** Announce `maxAttemptsReached` after this many failed attempts (the link keeps probing at `maxDelayMs`). */
  maxAttempts?: number | null;
  baseDelayMs?: number | null;
  maxDelayMs?: number | null;
  /** Relative jitter, 0..1 (default 0.3). */
  jitter?: number | null;
  /** Shared secret for the proxy (`read` or `control` role). */
  token?: string | null;
  /** localStorage key prefix (default `"station-link"`). */
  storagePrefix?: string | null;
  /** Persistent client id (default: generated once, stored). */
  clientId?: string | null;
  /** Latency ping interval (default 10000); `stale` after 1.5x without a pong. */
  pingIntervalMs?: number | null;
  /** Reliable publishes kept while offline (default 100). */
  outboxCapacity?: number | null;
  /** Socket open plus welcome must take less (default 15000). */
  connectTimeoutMs?: number | null;
  /** Name of the devtools console object on `window`; `null` turns it off. */
  consoleName?: string | null;
  /** Connect at once (default true). */
  autoConnect?: boolean | null;
  /** Tabs of one origin and `storagePrefix` share one connection (default true). */
  shareTabs?: boolean | null;
  /** More proxies of the same station, tried in turn. */
  fallbackUrls?: string[] | null;
}

/** `send(kind, payload, options)`. An unknown option throws. */
export interface SendOptions {
  /** `reliable` (default): kept in the outbox until accepted; `volatile`: dropped while offline. */
  delivery?: Delivery;
  /** Deadline: the proxy refuses the publish if it arrives later than this. */
  ttlMs?: number;
}

export interface StateEvent {
  state: LinkState;
  reason: string;
  /** What the token allows, once the proxy has said (else null). */
  access: Access | null;
}

export interface StationEvent {
  seq: number;
  kind: string;
  /** When the proxy logged it (Unix ms). */
  tsMs: number;
  payload: Payload;
}

export interface SnapshotEvent {
  /** The state reflects every event up to and including this seq. */
  upto: number;
  /** The last value of every kind. */
  state: { [kind: string]: Payload };
  /** True for the state a previous page of this dashboard stored, shown at load before any connection. */
  restored?: true;
  /** With `restored`: when that page saved it (Unix ms). */
  asOfMs?: number;
}

export interface GapEvent {
  from: number;
  to: number;
  reason: string;
}

export interface ReconnectedEvent {
  attempts: number;
  downtimeMs: number;
}

export interface MaxAttemptsEvent {
  attempts: number;
}

export interface QualityEvent {
  score: number;
  stability: number;
  ackRate: number;
  uptime: number;
  activity: number;
}

export interface LatencyEvent {
  rttMs: number;
  smoothedMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
}

export interface AcceptedEvent {
  upto: number;
}

export interface RejectedEvent {
  clientSeq: number;
  reason: string;
}

export type ErrorKind =
  | 'storage'
  | 'outboxOverflow'
  | 'notSent'
  | 'socket'
  | 'unauthorized'
  | 'replaced'
  | 'shutting_down'
  | (string & {});

export interface ErrorEvent {
  kind: ErrorKind;
  message: string;
}

/** Every event name and what its listener gets. */
export interface LinkEvents {
  state: StateEvent;
  event: StationEvent;
  snapshot: SnapshotEvent;
  gap: GapEvent;
  reconnected: ReconnectedEvent;
  maxAttemptsReached: MaxAttemptsEvent;
  quality: QualityEvent;
  latency: LatencyEvent;
  accepted: AcceptedEvent;
  rejected: RejectedEvent;
  error: ErrorEvent;
}

export interface LinkStatus {
  state: LinkState;
  url: string;
  clientId: string;
  lastSeq: number;
  outbox: number;
  role: 'leader' | 'follower';
  access: Access | null;
  shared: boolean;
}

export interface QueuedPublish {
  client_seq: number;
  kind: string;
  payload: Payload;
  delivery: Delivery;
  expires_at_ms?: number;
}

export interface HistoryEntry {
  at_ms: number;
  event: string;
  detail: string;
}

/** `metrics()`: counters, latency, quality and its inputs (snake_case, as the session names them). */
export interface Metrics {
  state: LinkState;
  client_id: string;
  epoch: number | null;
  last_seq: number;
  attempt: number;
  reconnects: number;
  connected_for_ms: number;
  delivered: number;
  duplicates: number;
  gaps: number;
  outbox: number;
  outbox_capacity: number;
  outbox_evicted: number;
  frames_in: number;
  frames_out: number;
  bytes_in: number;
  bytes_out: number;
  pings_sent: number;
  pongs_received: number;
  healthy: boolean;
  rtt_last_ms: number | null;
  rtt_smoothed_ms: number | null;
  rtt_p50_ms: number | null;
  rtt_p95_ms: number | null;
  quality: number;
  quality_stability: number;
  quality_ack_rate: number;
  quality_uptime: number;
  quality_activity: number;
}

/** A resilient link to the edge proxy. */
export class Link {
  /** `url`: the proxy's WebSocket, e.g. `ws://127.0.0.1:8080/ws`. */
  constructor(url: string, options?: LinkOptions | null);
  connect(): void;
  /** Closes the link; a leader tab hands the connection to another tab. */
  close(): void;
  /** Publishes an event or command; `radio.ptt` is never stored. Throws on a payload it cannot send or an unknown option. */
  send(kind: string, payload?: SendPayload, options?: SendOptions | null): void;
  on<K extends keyof LinkEvents>(name: K, listener: (event: LinkEvents[K]) => void): void;
  off<K extends keyof LinkEvents>(name: K, listener: (event: LinkEvents[K]) => void): void;
  forceReconnect(): void;
  /** Drops the connection and stays away for `ms` milliseconds. */
  simulateDisconnect(ms: number): void;
  /** One round trip now: resolves with the RTT in ms; rejects after 5 s or when not connected. */
  testConnection(): Promise<number>;
  metrics(): Metrics;
  status(): LinkStatus;
  /** The lifecycle history (last 100 entries, JSON-serialisable). */
  history(): HistoryEntry[];
  /** Reliable publishes waiting for the proxy (the outbox). */
  buffer(): QueuedPublish[];
  clearBuffer(): void;
  /** Everything useful for a bug report, as a JSON Blob. */
  exportLogs(): Blob;
  /** Frees the wasm memory behind this link (it cannot be used after). */
  free(): void;
}

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

/** The module's exports (minified names: not an API). */
export interface InitOutput {
  readonly [name: string]: unknown;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/** Instantiates the module synchronously from its bytes or a compiled module. */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/** Loads `station_link_bg.wasm` (next to this file unless told where). Await it before `new Link`. */
export default function __wbg_init(
  module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>,
): Promise<InitOutput>;
