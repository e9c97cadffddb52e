/**
 * Groups when a conditional write's answer is lost: Cassandra applied it (a real node, a real
 * Paxos round), but the caller gets the timeout Cassandra gives a contended CAS. The change must
 * be reported as done, not as a failure that a retry then turns into "already exists" or a second
 * add past the cap.
 */
import assert from 'node:assert/strict';
import { errors as driverErrors, types, type Client } from 'cassandra-driver';
import { Code } from '../../common/errors';
import { Groups } from './groups';
import { suiteStore, uid } from './store.test-support';

/** The error Cassandra answers a CAS write that timed out with: its outcome is unknown. */
function casTimeout(): Error {
  const err = new driverErrors.ResponseError(types.responseErrorCodes.writeTimeout, 'Operation timed out - received only 0 responses.');
  (err as unknown as { writeType: string }).writeType = 'CAS';
  return err;
}

/** The real client, except that the next `lose` batches are executed and their answers replaced by a CAS timeout. */
function losingAnswers(client: Client): { client: Client; lose: (n: number) => void; lost: () => number } {
  let toLose = 0;
  let lost = 0;
  // Groups uses execute and batch only.
  const wrapped = {
    execute: client.execute.bind(client),
    batch: async (queries: Parameters<Client['batch']>[0], options: Parameters<Client['batch']>[1]) => {
      const rs = await client.batch(queries, options);
      if (toLose > 0) {
        toLose--;
        lost++;
        throw casTimeout();
      }
      return rs;
    },
  } as unknown as Client;
  return { client: wrapped, lose: (n) => (toLose = n), lost: () => lost };
}

describe('Cassandra groups: a conditional write whose answer is lost (real Cassandra)', function () {
  this.timeout(30_000);
  const { keyspace, store } = suiteStore('groups');
  let groups: Groups;
  let faults: ReturnType<typeof losingAnswers>;

  beforeEach(() => {
    faults = losingAnswers((store() as unknown as { client: Client }).client);
    groups = new Groups({ client: faults.client, keyspace, serialConsistency: types.consistencies.serial, maxCasAttempts: 10 });
  });

  it('a create that applied is a create, not "already exists"', async () => {
    const g = { groupId: uid('g'), name: 'lost', owner: uid('o'), members: [], createdAtMs: Date.now() };
    const members = [g.owner, uid('a'), uid('b')];
    faults.lose(1);
    const created = await groups.create({ ...g, members }, members);
    assert.equal(faults.lost(), 1);
    assert.deepEqual(created.members, members);
    assert.deepEqual((await groups.get(g.groupId))?.members, members);
    // Another create of the same id, a different group, is still refused.
    await assert.rejects(groups.create({ ...g, name: 'other', members }, members), (e: { code?: number }) => e.code === Code.BAD_REQUEST);
  });

  it('an add that applied returns the group with its members, once, and the cap still holds', async () => {
    const owner = uid('o');
    const g = { groupId: uid('g'), name: 'cap', owner, members: [owner, uid('m')], createdAtMs: Date.now() };
    await groups.create(g, g.members);
    const [x, y] = [uid('x'), uid('y')];
    faults.lose(2);
    const after = await groups.add(g.groupId, [x], 3);
    assert.equal(faults.lost(), 1, 'the first answer lost; the read after it found the add done');
    assert.deepEqual(after.members, [...g.members, x]);
    await assert.rejects(groups.add(g.groupId, [y], 3), (e: { code?: number }) => e.code === Code.GROUP_FULL);
    assert.deepEqual((await groups.get(g.groupId))?.members, [...g.members, x]);
  });

  it('a removal that applied returns the group without them', async () => {
    const owner = uid('o');
    const [a, b] = [uid('a'), uid('b')];
    const g = { groupId: uid('g'), name: 'rm', owner, members: [owner, a, b], createdAtMs: Date.now() };
    await groups.create(g, g.members);
    faults.lose(1);
    const after = await groups.remove(g.groupId, [a]);
    assert.equal(faults.lost(), 1);
    assert.deepEqual(after.members, [owner, b]);
    assert.deepEqual((await groups.get(g.groupId))?.members, [owner, b]);
  });

  it('other driver errors still fail the change', async () => {
    const owner = uid('o');
    const g = { groupId: uid('g'), name: 'err', owner, members: [owner], createdAtMs: Date.now() };
    await groups.create(g, g.members);
    const broken = {
      execute: faults.client.execute,
      batch: async () => {
        throw new driverErrors.ResponseError(types.responseErrorCodes.unavailableException, 'Cannot achieve consistency level SERIAL');
      },
    } as unknown as Client;
    const failing = new Groups({ client: broken, keyspace, serialConsistency: types.consistencies.serial, maxCasAttempts: 10 });
    await assert.rejects(failing.add(g.groupId, [uid('z')], 10), /Cannot achieve consistency/);
    assert.deepEqual((await groups.get(g.groupId))?.members, [owner]);
  });
});
