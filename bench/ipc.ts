/**
 * Coordinator <-> load-generator worker messages (child_process IPC, "advanced" serialization so
 * typed arrays travel as they are). Every command carries an id and gets exactly one reply.
 */
import type { ChildProcess } from 'node:child_process';
import type { LossSummary } from './checker';
import type { HistogramSnapshot } from './histogram';
import type { TopologySpec } from './topology';

export interface HostPort { host: string; port: number }

export interface InitCmd {
  t: 'init';
  worker: number;
  userPrefix: string;
  spec: TopologySpec;
  users: number[];
  /** User i connects to gateways[i % gateways.length]. */
  gateways: HostPort[];
  secret: string;
  contentBytes: number;
  /** Connect over TLS (the gateways are TLS listeners), trusting `ca` (PEM; default the system's roots). */
  tls?: { ca?: string };
}

/** What a TLS connection negotiated (the first one a worker made). */
export interface TlsSeen { protocol: string; cipher: string }

/**
 * Set-ups in a loop: each of `concurrency` lanes connects (TLS handshake when on), authenticates
 * and closes, again and again, until durationMs has passed. `resume`: each lane offers the TLS
 * session of its previous connection (ticket resumption).
 */
export interface HandshakesCmd { t: 'handshakes'; durationMs: number; concurrency: number; timeoutMs: number; resume: boolean }

export interface HandshakesResult {
  /** Set-ups that reached AuthOk. */
  count: number;
  /** Of those, TLS sessions the server resumed. */
  resumed: number;
  failed: number;
  errors: Record<string, number>;
  setupUs: HistogramSnapshot;
  elapsedMs: number;
  tls?: TlsSeen;
  /** The first failure's message (an untrusted certificate, a refused Auth...). */
  firstError?: string;
}

export interface LoadCmd {
  t: 'load';
  phase: number;
  mode: 'max' | 'rate';
  /** This worker's share of the send rate (mode rate). */
  ratePerSec: number;
  /** Sends in flight per user: the closed-loop depth (max) or the cap (rate). */
  window: number;
  /** One SYNC per this many sends (0 = none): the mixed scenario's reads. */
  syncEvery: number;
}

export type Command =
  | InitCmd
  | { t: 'connect'; concurrency: number; timeoutMs: number; closeAfter: boolean }
  | HandshakesCmd
  | { t: 'closeConns' }
  | { t: 'createGroups' }
  | { t: 'groupIds'; ids: Array<[number, string]> }
  | LoadCmd
  | { t: 'tick' }
  | { t: 'stop'; timeoutMs: number }
  | { t: 'received' }
  | { t: 'statuses' }
  | { t: 'verify'; statuses: Array<[number, Uint8Array]>; syncTimeoutMs: number }
  | { t: 'echo'; target: HostPort; connections: number; durationMs: number; frameBytes: number }
  | { t: 'echoConnect'; target: HostPort; count: number; concurrency: number; frameBytes: number }
  | { t: 'echoHold'; target: HostPort; count: number; concurrency: number }
  | { t: 'echoRelease' }
  | { t: 'mem' };

export type Envelope = Command & { id: number };

export interface Reply { t: 'reply'; id: number; ok: boolean; value?: unknown; error?: string }

export interface TickStats {
  sent: number;
  acked: number;
  /** Error replies by code (as a string key). */
  errors: Record<string, number>;
  /** Pushes to a user other than the sender. */
  deliveries: number;
  /** Pushes of a user's own sends to its own device. */
  selfPushes: number;
  /** Rate mode: sends due but not made because the user's window was full. */
  skipped: number;
  syncs: number;
  ackUs: HistogramSnapshot;
  e2eUs: HistogramSnapshot;
  syncUs: HistogramSnapshot;
  /** Connections that closed since the last tick, by Disconnect code. */
  closes: Record<string, number>;
}

export interface ConnectResult {
  connected: number;
  failed: number;
  errors: Record<string, number>;
  setupUs: HistogramSnapshot;
  elapsedMs: number;
  tls?: TlsSeen;
}

export interface VerifyResult {
  loss: LossSummary;
  /** A few missing (uid, from, clientMsgId) for the report. */
  samples: string[];
  syncFailures: number;
}

export interface EchoResult {
  count: number;
  failed: number;
  rttUs: HistogramSnapshot;
  elapsedMs: number;
}

/** Sends commands to one child and resolves each with its reply. */
export class RpcChannel {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly child: ChildProcess, readonly name: string) {
    child.on('message', (m: Reply) => {
      if (!m || m.t !== 'reply') return;
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.value);
      else w.reject(new Error(`${name}: ${m.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
      this.waiting.clear();
    });
  }

  call<T>(cmd: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...cmd, id } as Envelope, (err) => {
        if (!err) return;
        this.waiting.delete(id);
        reject(err);
      });
    });
  }
}
