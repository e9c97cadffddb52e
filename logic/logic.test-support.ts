/**
 * Test support for the logic suites: a real SQLite store in a temp dir, a real in-process bus,
 * and a small in-memory RouterApi (the router is not what these suites test).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InProcessBus, gatewaySubject } from '../bus/bus';
import { ImError } from '../common/errors';
import { decodeDeliveryBatch } from '../proto/delivery';
import type { DeliveryBatch } from '../proto/delivery';
import { LENGTH_BYTES } from '../proto/codec';
import { pushFrame } from '../proto/push';
import { decode, decodeFrame, type Message } from '../proto/wire';
import type { GatewayStatus, HeartbeatResult, RouterApi, SessionRef } from '../router/api';
import { SqliteStore } from '../storage/sqlite/store';
import type { Caller, LogicServiceOptions } from './service';
import { LogicService } from './service';

export class MemoryRouter implements RouterApi {
  private readonly byUid = new Map<string, SessionRef[]>();
  lookups = 0;
  /** When set, lookup rejects with it (to exercise best-effort push). */
  failLookups: Error | undefined;

  /** Logic never binds; displacement is the gateway's business (gateway/gateway.test-support.ts). */
  async bind(sessions: SessionRef[]): Promise<SessionRef[]> {
    for (const s of sessions) {
      const list = (this.byUid.get(s.uid) ?? []).filter((x) => !(x.node === s.node && x.connId === s.connId));
      list.push({ ...s });
      this.byUid.set(s.uid, list);
    }
    return [];
  }

  async unbind(sessions: SessionRef[]): Promise<void> {
    for (const s of sessions) {
      const list = (this.byUid.get(s.uid) ?? []).filter((x) => !(x.node === s.node && x.connId === s.connId));
      if (list.length) this.byUid.set(s.uid, list); else this.byUid.delete(s.uid);
    }
  }

  async snapshot(node: string, sessions: SessionRef[]): Promise<void> {
    for (const [uid, list] of this.byUid) {
      const kept = list.filter((s) => s.node !== node);
      if (kept.length) this.byUid.set(uid, kept); else this.byUid.delete(uid);
    }
    await this.bind(sessions);
  }

  async lookup(uids: string[]): Promise<SessionRef[]> {
    this.lookups++;
    if (this.failLookups) throw this.failLookups;
    return uids.flatMap((u) => this.byUid.get(u) ?? []);
  }

  async heartbeat(_status: GatewayStatus): Promise<HeartbeatResult> {
    return { heartbeatIntervalMs: 5000, known: true };
  }

  close(): void {}
}

export interface LogicEnv {
  store: SqliteStore;
  bus: InProcessBus;
  router: MemoryRouter;
  service: LogicService;
  close(): Promise<void>;
}

export function makeLogicEnv(opts: Partial<Omit<LogicServiceOptions, 'store' | 'bus' | 'router'>> = {}): LogicEnv {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-logic-'));
  const store = SqliteStore.open({ path: path.join(dir, 'im.db') });
  const bus = new InProcessBus();
  const router = new MemoryRouter();
  const service = new LogicService({ store, bus, router, ...opts });
  return {
    store, bus, router, service,
    async close() {
      await service.close();
      await bus.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function caller(uid: string, node = 'gw1', deviceId = 'd1'): Caller {
  return { uid, deviceId, connId: `${uid}-${deviceId}`, node };
}

/** Collects every DeliveryBatch published for `node`. */
export function collectBatches(bus: InProcessBus, node: string): { batches: DeliveryBatch[]; stop: () => void } {
  const batches: DeliveryBatch[] = [];
  const stop = bus.subscribe(gatewaySubject(node), (data) => batches.push(decodeDeliveryBatch(data)));
  return { batches, stop };
}

/** One recipient of a pushed message, with the Message as its client decodes it from the PUSH frame. */
export interface PushedTo { uid: string; seq: number; exceptConnId: string; message: Message }

/** Every (push, target) of `batches`, in order. */
export function pushedTo(batches: readonly DeliveryBatch[]): PushedTo[] {
  return batches.flatMap((b) => b.pushes.flatMap((p) => p.targets.map((t) => ({
    uid: t.uid, seq: t.seq, exceptConnId: t.exceptConnId ?? '',
    message: decode('Message', decodeFrame(pushFrame(t.seq, p.message).subarray(LENGTH_BYTES)).body),
  }))));
}

/** Lets queued fan-out finish: waits for running flushes, then one macrotask for bus delivery. */
export async function settle(service: LogicService): Promise<void> {
  await service.flushPushes();
  await new Promise((r) => setImmediate(r));
}

/** The ImError code a promise rejects with (fails when it resolves or throws something else). */
export async function errorCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ImError) return err.code;
    throw err;
  }
  throw new Error('expected the call to fail');
}

export async function rejection(p: Promise<unknown>): Promise<ImError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ImError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}
