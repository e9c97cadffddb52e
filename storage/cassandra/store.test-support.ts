/**
 * Test support for the Cassandra store: test users and sends, stopping a store as by kill -9, and
 * reaching the parts a test steers (the orphan sweep's pause hook, a call served as its owner).
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'cassandra-driver';
import { BadRequestError } from '../../common/errors';
import { newId, peerConvId } from '../../common/ids';
import type { AppendInput } from '../store';
import { CASSANDRA_CONTACT, dropKeyspace, needs } from '../../test/infra';
import { CassandraStore, type CassandraStoreOptions } from './store';
import type { OrphanSweep } from './orphans';

/** A store on the test node: consistency ONE (one node), no handovers (shards move only when a test moves them). */
export function testStoreOptions(keyspace: string, over: Partial<CassandraStoreOptions> = {}): CassandraStoreOptions {
  return { contactPoints: CASSANDRA_CONTACT.split(','), keyspace, consistency: 'ONE', maxShardMoves: 0, ...over };
}

/**
 * A store on a keyspace of its own for the mocha suite this is called in: opened before its tests
 * (skipped loudly without Cassandra, a failure with IM_REQUIRE_INFRA=1), closed and the keyspace
 * dropped after them. `store()` is the open store.
 */
export function suiteStore(name: string, over: Partial<CassandraStoreOptions> = {}): { keyspace: string; store: () => CassandraStore } {
  const keyspace = `im_test_${randomBytes(4).toString('hex')}_${name}`;
  let store: CassandraStore | undefined;
  before(async function () {
    await needs(this, 'cassandra');
    store = await CassandraStore.open(testStoreOptions(keyspace, over));
  });
  after(async () => {
    await store?.close();
    await dropKeyspace(keyspace);
  });
  return { keyspace, store: () => store! };
}

/** A user id of its own for each test. */
export function uid(name: string): string {
  return `${name}-${randomBytes(5).toString('hex')}`;
}

let clock = Date.now();
/** A 1:1 send, each with its own clientMsgId and a later sentAtMs. */
export function direct(from: string, to: string, text: string, over: Partial<AppendInput> = {}): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: new TextEncoder().encode(text), sentAtMs: ++clock,
    recipients: [from, to], dedupWindowMs: 60_000, ...over,
  };
}

interface Inner {
  lease: { close(o: { keepRow: boolean }): Promise<void> }; log: { close(): void; drop(): void }; client: Client;
  balancer: { close(): Promise<void> }; orphans: OrphanSweep; peers: { close(): void };
  serve(op: string, args: unknown): Promise<unknown>;
  shards: { of(key: string): number; resolve(shard: number): Promise<unknown> };
}

const inner = (store: CassandraStore) => store as unknown as Inner;

/**
 * A store stopped as by kill -9, as far as the keyspace and the other stores can tell: lease
 * renewals stop and its row stays until it ends, nothing logged is written to the tables any more,
 * calls forwarded to it get no answer, the driver closes.
 */
export async function killHard(store: CassandraStore): Promise<void> {
  const s = inner(store);
  s.peers.close();
  await s.balancer.close();
  await s.orphans.close();
  s.log.close();
  s.log.drop();
  await s.lease.close({ keepRow: true });
  await s.client.shutdown();
}

/** Statements the store's driver has in flight now, over every host. */
export function statementsInFlight(store: CassandraStore): number {
  const state = inner(store).client.getState();
  return state.getConnectedHosts().reduce((n, h) => n + state.getInFlightQueries(h), 0);
}

/** The store's orphan sweep (its `pause` hook). */
export const orphansOf = (store: CassandraStore): OrphanSweep => inner(store).orphans;

/**
 * The store answers forwarded sends and send parts as a release before them did ("unknown store
 * peer op"), and coordinates its own sends key by key, as that release did when it did not own
 * every key of a send.
 */
export function asOlderRelease(store: CassandraStore): void {
  const s = inner(store);
  const serve = s.serve.bind(store);
  s.serve = (op, args) => (op === 'send' || op === 'part' ? Promise.reject(new BadRequestError(`unknown store peer op ${op}`)) : serve(op, args));
}

/**
 * Serves a call (one with a `key`) as its key's owner here, taking the key's shard first when it
 * is free or its owner is dead, whichever process is preferred for it (as a caller's last attempts do).
 */
export async function serveHere(store: CassandraStore, op: string, args: { key: string }): Promise<unknown> {
  const s = inner(store);
  await s.shards.resolve(s.shards.of(args.key));
  return s.serve(op, args);
}

/**
 * Counts the requests the store's own (real) driver client sends from now on, the statements in
 * them, and the queries of the single ones (`execute`).
 */
export function countRequests(store: CassandraStore): {
  requests: number; statements: number; queries: string[]; options: ({ consistency?: number } | undefined)[]; restore: () => void;
} {
  const client = inner(store).client as unknown as { batch: (...a: unknown[]) => unknown; execute: (...a: unknown[]) => unknown };
  const { batch, execute } = client;
  const out = {
    requests: 0, statements: 0, queries: [] as string[], options: [] as ({ consistency?: number } | undefined)[],
    restore: () => Object.assign(client, { batch, execute }),
  };
  client.batch = (...a: unknown[]) => {
    out.requests++;
    out.statements += (a[0] as unknown[]).length;
    return batch.apply(client, a);
  };
  client.execute = (...a: unknown[]) => {
    out.requests++;
    out.statements++;
    out.queries.push(a[0] as string);
    out.options.push(a[2] as { consistency?: number } | undefined);
    return execute.apply(client, a);
  };
  return out;
}
