/**
 * `store-cost` on the SQLite store (a throw-away database in tmpfs): the options that shape the
 * traffic (--users, --warmup-messages) and the ones it refuses.
 */
import assert from 'node:assert/strict';
import { UsageError } from './options';
import { storeCost } from './store-cost';

describe('bench store-cost', function () {
  this.timeout(30_000);

  it('spreads the messages over --users and leaves --warmup-messages out of the count', async () => {
    const r = await storeCost(['--users', '10', '--warmup-messages', '15', '--messages', '40', '--batch', '5']);
    assert.equal(r.store, 'sqlite');
    assert.equal(r.users, 10);
    assert.equal(r.warmupMessages, 15);
    assert.equal(r.messages, 40);
    // 1:1 messages in a SQLite store: a messages row and two inbox rows each, counted for the 40 only.
    assert.equal(r.rowsPerMessage?.messages, 1);
    assert.equal(r.rowsPerMessage?.inbox, 2);
  });

  it('refuses fewer users than recipients, --max-cached-keys, --max-key-heads and --restart on SQLite, and an unknown --restart', async () => {
    await assert.rejects(storeCost(['--users', '3', '--recipients', '5']), (e: unknown) => e instanceof UsageError && /--users must be at least --recipients/.test(e.message));
    await assert.rejects(storeCost(['--max-cached-keys', '5']), (e: unknown) => e instanceof UsageError && /--store cassandra only/.test(e.message));
    await assert.rejects(storeCost(['--max-key-heads', '5']), (e: unknown) => e instanceof UsageError && /--store cassandra only/.test(e.message));
    await assert.rejects(storeCost(['--restart', 'handoff']), (e: unknown) => e instanceof UsageError && /--store cassandra only/.test(e.message));
    await assert.rejects(storeCost(['--store', 'cassandra', '--restart', 'warm']), (e: unknown) => e instanceof UsageError && /--restart must be handoff or cold/.test(e.message));
    await assert.rejects(storeCost(['--users', '0']), (e: unknown) => e instanceof UsageError && /--users/.test(e.message));
  });
});
