/**
 * A load-generator process (forked by the coordinator): holds its share of the run's users, one
 * connection each, and obeys the coordinator's commands (bench/ipc.ts): connect, create groups,
 * send load, report per-second stats, stop, and check what its users received.
 */
import { Code } from '../common/errors';
import { signToken } from '../common/jwt';
import { decode, encode, Op } from '../proto/wire';
import { BenchConn } from './bench-conn';
import { addDevice, ByteLog, checkDevice, emptyLoss, ReceiptBook, SendStatus } from './checker';
import { holdEcho, releaseEcho, runEcho, runEchoConnect } from './echo-client';
import { Histogram } from './histogram';
import type { Command, ConnectResult, Envelope, HandshakesCmd, HandshakesResult, InitCmd, LoadCmd, TickStats, TlsSeen, VerifyResult } from './ipc';
import { buildTopology, isSender, Role, sendersTo, Topology } from './topology';
import { nowUs, readStamp, sendFrame, stampContent } from './stamp';
import { setTimeout as sleep } from 'node:timers/promises';

const TOKEN_TTL_S = 24 * 3600;
const SYNC_PAGE = 500;
/** Closed loop after an error reply: wait a little instead of spinning on a refusing server. */
const RETRY_AFTER_ERROR_MS = 20;
const RATE_TICK_MS = 2;
const HEARTBEAT_SWEEP_MS = 1000;

class TickAccumulator {
  sent = 0;
  acked = 0;
  errors: Record<string, number> = {};
  deliveries = 0;
  selfPushes = 0;
  skipped = 0;
  syncs = 0;
  closes: Record<string, number> = {};
  readonly ackUs = new Histogram();
  readonly e2eUs = new Histogram();
  readonly syncUs = new Histogram();

  take(): TickStats {
    const out: TickStats = {
      sent: this.sent, acked: this.acked, errors: this.errors, deliveries: this.deliveries, selfPushes: this.selfPushes,
      skipped: this.skipped, syncs: this.syncs, closes: this.closes,
      ackUs: this.ackUs.snapshot(), e2eUs: this.e2eUs.snapshot(), syncUs: this.syncUs.snapshot(),
    };
    this.sent = this.acked = this.deliveries = this.selfPushes = this.skipped = this.syncs = 0;
    this.errors = {};
    this.closes = {};
    this.ackUs.reset();
    this.e2eUs.reset();
    this.syncUs.reset();
    return out;
  }
}

function bump(rec: Record<string, number>, key: number | string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

class LoadWorker {
  private cfg!: InitCmd;
  private topo!: Topology;
  private users: number[] = [];
  private readonly slotOf = new Map<number, number>();
  private conns: Array<BenchConn | undefined> = [];
  private tokens: string[] = [];
  private books: ReceiptBook[] = [];
  private statuses: ByteLog[] = [];
  private nextId!: Uint32Array;
  private inflight!: Uint16Array;
  private targets: Array<{ to?: string; groupId?: string } | undefined> = [];
  private senderSlots: number[] = [];
  private groupIds = new Map<number, string>();
  private readonly tick = new TickAccumulator();
  private pushesTotal = 0;
  private foreignPushes = 0;
  private load: LoadCmd | undefined;
  private rateTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private totalInflight = 0;
  private sendsSinceSync = 0;
  private rr = 0;

  async handle(cmd: Command): Promise<unknown> {
    switch (cmd.t) {
      case 'init': return this.init(cmd);
      case 'connect': return this.connect(cmd.concurrency, cmd.timeoutMs, cmd.closeAfter);
      case 'handshakes': return this.handshakes(cmd);
      case 'closeConns': return this.closeConns();
      case 'createGroups': return this.createGroups();
      case 'groupIds': return this.setGroupIds(cmd.ids);
      case 'load': return this.startLoad(cmd);
      case 'tick': return this.tick.take();
      case 'stop': return this.stopLoad(cmd.timeoutMs);
      case 'received': return { received: this.pushesTotal, foreign: this.foreignPushes };
      case 'statuses': return this.users.map((u, slot) => [u, this.statuses[slot].toBytes()] as [number, Uint8Array]);
      case 'verify': return this.verify(cmd.statuses, cmd.syncTimeoutMs);
      case 'echo': return runEcho(cmd.target, cmd.connections, cmd.durationMs, cmd.frameBytes);
      case 'echoConnect': return runEchoConnect(cmd.target, cmd.count, cmd.concurrency, cmd.frameBytes);
      case 'echoHold': return holdEcho(cmd.target, cmd.count, cmd.concurrency);
      case 'echoRelease': return releaseEcho();
      case 'mem': return process.memoryUsage();
    }
  }

  private init(cmd: InitCmd): void {
    this.cfg = cmd;
    this.topo = buildTopology(cmd.spec);
    this.users = cmd.users;
    const n = this.users.length;
    this.nextId = new Uint32Array(n);
    this.inflight = new Uint16Array(n);
    this.conns = new Array(n);
    this.users.forEach((u, slot) => {
      this.slotOf.set(u, slot);
      this.books.push(new ReceiptBook());
      this.statuses.push(new ByteLog(16));
      if (this.topo.role[u] === Role.PEER) this.targets.push({ to: this.uid(this.topo.peer[u]) });
      else this.targets.push(undefined);
      if (isSender(this.topo, u)) this.senderSlots.push(slot);
    });
    this.heartbeatTimer = setInterval(() => this.heartbeats(), HEARTBEAT_SWEEP_MS);
  }

  private uid(user: number): string {
    return `${this.cfg.userPrefix}${user}`;
  }

  private userOfUid(uid: string): number {
    if (!uid.startsWith(this.cfg.userPrefix)) return -1;
    const n = Number(uid.slice(this.cfg.userPrefix.length));
    return Number.isInteger(n) ? n : -1;
  }

  private token(slot: number): string {
    return (this.tokens[slot] ??= signToken(this.cfg.secret, this.uid(this.users[slot]), TOKEN_TTL_S));
  }

  /** A connection for the user in `slot`, to its gateway (user % gateways), over TLS when the run is. */
  private newConn(slot: number, onClose: (code: number) => void, session?: Buffer): BenchConn {
    const user = this.users[slot];
    const gw = this.cfg.gateways[user % this.cfg.gateways.length];
    return new BenchConn({
      user, uid: this.uid(user), host: gw.host, port: gw.port, token: this.token(slot), deviceId: 'bench',
      onPush: (c, body) => this.onPush(c, body),
      onClose: (_c, code) => onClose(code),
      tls: this.cfg.tls ? { ca: this.cfg.tls.ca, session } : undefined,
    });
  }

  private async connect(concurrency: number, timeoutMs: number, closeAfter: boolean): Promise<ConnectResult> {
    const setup = new Histogram();
    const errors: Record<string, number> = {};
    let connected = 0;
    let failed = 0;
    let next = 0;
    let tls: TlsSeen | undefined;
    const start = Date.now();
    const one = async (slot: number) => {
      const conn = this.newConn(slot, (code) => { if (!closeAfter) bump(this.tick.closes, code); });
      const t0 = nowUs();
      try {
        await conn.open(timeoutMs);
        setup.record(nowUs() - t0);
        connected++;
        tls ??= conn.tlsSeen;
        if (closeAfter) conn.close();
        else {
          // Spread the heartbeats over the interval instead of all at once.
          conn.lastPingMs = Date.now() - Math.random() * conn.heartbeatIntervalMs * 0.8;
          this.conns[slot] = conn;
        }
      } catch (err) {
        failed++;
        bump(errors, (err as { code?: number }).code ?? -1);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, this.users.length)) }, async () => {
      while (next < this.users.length) await one(next++);
    }));
    return { connected, failed, errors, setupUs: setup.snapshot(), elapsedMs: Date.now() - start, tls };
  }

  /** Connect (+ TLS) + Auth + close per lane, in a loop until cmd.durationMs has passed. */
  private async handshakes(cmd: HandshakesCmd): Promise<HandshakesResult> {
    const setup = new Histogram();
    const errors: Record<string, number> = {};
    let count = 0;
    let resumed = 0;
    let failed = 0;
    let next = 0;
    let tls: TlsSeen | undefined;
    let firstError: string | undefined;
    const start = Date.now();
    const end = start + cmd.durationMs;
    await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.concurrency, this.users.length)) }, async () => {
      let session: Buffer | undefined;
      while (Date.now() < end) {
        const conn = this.newConn(next++ % this.users.length, () => {}, cmd.resume ? session : undefined);
        const t0 = nowUs();
        try {
          await conn.open(cmd.timeoutMs);
          setup.record(nowUs() - t0);
          count++;
          if (conn.tlsResumed) resumed++;
          tls ??= conn.tlsSeen;
          session = conn.tlsSession ?? session;
        } catch (err) {
          failed++;
          bump(errors, (err as { code?: number }).code ?? -1);
          firstError ??= (err as Error).message;
        }
        conn.close();
      }
    }));
    return { count, resumed, failed, errors, setupUs: setup.snapshot(), elapsedMs: Date.now() - start, tls, firstError };
  }

  private closeConns(): void {
    for (const c of this.conns) c?.close();
    this.conns = new Array(this.users.length);
  }

  private async createGroups(): Promise<Array<[number, string]>> {
    const out: Array<[number, string]> = [];
    await Promise.all(this.topo.groups.map(async (g, index) => {
      const slot = this.slotOf.get(g.owner);
      if (slot === undefined) return;
      const conn = this.conns[slot];
      if (!conn) throw new Error(`group owner ${this.uid(g.owner)} is not connected`);
      const body = encode('GroupCreateReq', { name: `bench-${index}`, members: g.members.slice(1).map((m) => this.uid(m)) });
      const reply = await conn.requestAsync(Op.GROUP_CREATE, body, 30_000);
      const group = decode('GroupResp', reply.body).group;
      if (!group) throw new Error(`group ${index}: no group in the reply`);
      out.push([index, group.groupId]);
    }));
    return out;
  }

  private setGroupIds(ids: Array<[number, string]>): void {
    this.groupIds = new Map(ids);
    this.users.forEach((u, slot) => {
      if (this.topo.role[u] !== Role.GROUP) return;
      const id = this.groupIds.get(this.topo.groupOf[u]);
      if (!id) throw new Error(`no group id for group ${this.topo.groupOf[u]}`);
      this.targets[slot] = { groupId: id };
    });
  }

  // ------------------------------------------------------------------ load

  private startLoad(cmd: LoadCmd): void {
    this.load = cmd;
    if (cmd.mode === 'max') {
      for (const slot of this.senderSlots) for (let i = 0; i < cmd.window; i++) this.sendOne(slot);
      return;
    }
    const start = Date.now();
    let issued = 0;
    this.rateTimer = setInterval(() => {
      const due = Math.floor((cmd.ratePerSec * (Date.now() - start)) / 1000) - issued;
      for (let i = 0; i < due; i++) {
        const slot = this.nextSlotWithRoom(cmd.window);
        if (slot < 0) {
          this.tick.skipped += due - i;
          break;
        }
        this.sendOne(slot);
      }
      issued += Math.max(0, due);
    }, RATE_TICK_MS);
  }

  private nextSlotWithRoom(window: number): number {
    const n = this.senderSlots.length;
    for (let k = 0; k < n; k++) {
      const slot = this.senderSlots[this.rr];
      this.rr = (this.rr + 1) % n;
      const c = this.conns[slot];
      if (this.inflight[slot] < window && c && !c.closed) return slot;
    }
    return -1;
  }

  private sendOne(slot: number): void {
    const load = this.load;
    const conn = this.conns[slot];
    const target = this.targets[slot];
    if (!load || !conn || conn.closed || !target) return;
    const id = ++this.nextId[slot];
    this.statuses[slot].set(id, SendStatus.UNKNOWN);
    const sentUs = nowUs();
    const content = stampContent(this.cfg.contentBytes, sentUs, load.phase);
    this.inflight[slot]++;
    this.totalInflight++;
    this.tick.sent++;
    conn.sendBuilt((rid) => sendFrame(rid, target, String(id), content), (f) => {
      this.inflight[slot]--;
      this.totalInflight--;
      if (f.errorCode === 0) {
        this.statuses[slot].set(id, SendStatus.ACCEPTED);
        this.tick.acked++;
        this.tick.ackUs.record(nowUs() - sentUs);
      } else {
        // Refused at the gateway (never reached logic) vs. an outcome nobody can know.
        const refused = f.errorCode === Code.RATE_LIMITED || f.errorCode === Code.OVERLOADED;
        this.statuses[slot].set(id, refused ? SendStatus.REJECTED : SendStatus.UNKNOWN);
        bump(this.tick.errors, f.errorCode);
      }
      if (this.load && this.load.mode === 'max') {
        if (f.errorCode === 0) this.sendOne(slot);
        else setTimeout(() => this.sendOne(slot), RETRY_AFTER_ERROR_MS);
      }
    });
    if (load.syncEvery > 0 && ++this.sendsSinceSync >= load.syncEvery) {
      this.sendsSinceSync = 0;
      const t0 = nowUs();
      conn.request(Op.SYNC, encode('SyncReq', { fromSeq: conn.lastSeq, limit: 100 }), (f) => {
        if (f.errorCode) bump(this.tick.errors, f.errorCode);
        else this.tick.syncUs.record(nowUs() - t0);
        this.tick.syncs++;
      });
    }
  }

  private async stopLoad(timeoutMs: number): Promise<{ outstanding: number }> {
    this.load = undefined;
    if (this.rateTimer) clearInterval(this.rateTimer);
    this.rateTimer = undefined;
    const deadline = Date.now() + timeoutMs;
    while (this.totalInflight > 0 && Date.now() < deadline) await sleep(20);
    return { outstanding: this.totalInflight };
  }

  private onPush(conn: BenchConn, body: Uint8Array): void {
    this.pushesTotal++;
    const m = decode('Message', body);
    if (m.seq > conn.lastSeq) conn.lastSeq = m.seq;
    const from = this.userOfUid(m.from);
    const id = Number(m.clientMsgId);
    const slot = this.slotOf.get(conn.user);
    if (from < 0 || !Number.isInteger(id) || id < 1 || slot === undefined) {
      this.foreignPushes++;
      return;
    }
    this.books[slot].record(from, id);
    if (from === conn.user) {
      this.tick.selfPushes++;
      return;
    }
    this.tick.deliveries++;
    const stamp = readStamp(m.content);
    if (stamp && this.load && stamp.phase === this.load.phase) this.tick.e2eUs.record(nowUs() - stamp.sentUs);
  }

  private heartbeats(): void {
    const now = Date.now();
    for (const c of this.conns) {
      if (c && !c.closed && now - c.lastPingMs >= c.heartbeatIntervalMs * 0.8) c.ping(now);
    }
  }

  // ------------------------------------------------------------------ verification

  private async verify(all: Array<[number, Uint8Array]>, syncTimeoutMs: number): Promise<VerifyResult> {
    const statusOf = new Map(all);
    const loss = emptyLoss();
    const samples: string[] = [];
    let syncFailures = 0;
    let next = 0;
    const checkOne = async (slot: number) => {
      const user = this.users[slot];
      if (this.topo.role[user] === Role.IDLE) return;
      const check = checkDevice(this.books[slot], sendersTo(this.topo, user), (s) => statusOf.get(s));
      let inbox = new Set<string>();
      if (check.missing.length > 0) {
        try {
          inbox = await this.inboxKeys(slot, syncTimeoutMs);
        } catch {
          syncFailures++;
        }
        for (const ref of check.missing.slice(0, Math.max(0, 5 - samples.length))) {
          samples.push(`${this.uid(user)} missing ${this.uid(ref.sender)}/${ref.id}`);
        }
      }
      addDevice(loss, check, (ref) => inbox.has(`${ref.sender}:${ref.id}`));
    };
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < this.users.length) await checkOne(next++);
    }));
    loss.unexpected += this.foreignPushes;
    return { loss, samples, syncFailures };
  }

  /** Every (sender, id) in the user's inbox, by paging SYNC from seq 0. */
  private async inboxKeys(slot: number, timeoutMs: number): Promise<Set<string>> {
    const conn = this.conns[slot];
    if (!conn || conn.closed) throw new Error('not connected');
    const keys = new Set<string>();
    let from = 0;
    for (;;) {
      const f = await conn.requestAsync(Op.SYNC, encode('SyncReq', { fromSeq: from, limit: SYNC_PAGE }), timeoutMs);
      const page = decode('SyncResp', f.body);
      for (const m of page.messages) {
        keys.add(`${this.userOfUid(m.from)}:${m.clientMsgId}`);
        if (m.seq > from) from = m.seq;
      }
      if (!page.hasMore || page.messages.length === 0) return keys;
    }
  }

  close(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.rateTimer) clearInterval(this.rateTimer);
    this.closeConns();
    releaseEcho();
  }
}

if (require.main === module) {
  const worker = new LoadWorker();
  process.on('message', (m: Envelope) => {
    worker.handle(m).then(
      (value) => process.send?.({ t: 'reply', id: m.id, ok: true, value: value ?? null }),
      (err: unknown) => process.send?.({ t: 'reply', id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => {
    worker.close();
    process.exit(0);
  });
}
