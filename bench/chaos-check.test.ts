import { strict as assert } from 'node:assert';
import { ChaosRecord, ChaosSend, checkChaos, FaultWindow, Seen } from './chaos-check';

/** Users 0 and 1 are a pair; 2, 3, 4 a group. */
const recipients = (s: number) => (s <= 1 ? [0, 1] : [2, 3, 4]);
const windows: FaultWindow[] = [
  { fault: 'baseline', fromMs: 0, toMs: 1000, exempt: new Set() },
  { fault: 'kill -9 gateway-1', fromMs: 1000, toMs: 2000, exempt: new Set([0]), recoveryMs: 700 },
];

function acked(sender: number, n: number, startedAtMs: number): ChaosSend {
  return { sender, n, startedAtMs, msgId: `m${sender}.${n}`, ackedAtMs: startedAtMs + 5 };
}

/** Every recipient stores and shows each acked send once: the clean run the others perturb. */
function cleanRecord(sends: ChaosSend[]): { rec: ChaosRecord; inbox: Map<number, Seen[]>; app: Map<number, Seen[]> } {
  const inbox = new Map<number, Seen[]>();
  const app = new Map<number, Seen[]>();
  for (const s of sends) {
    for (const u of recipients(s.sender)) {
      for (const m of [inbox, app]) {
        const list = m.get(u) ?? [];
        list.push({ sender: s.sender, n: s.n, msgId: s.msgId!, seq: list.length + 1 });
        m.set(u, list);
      }
    }
  }
  return { rec: { sends, recipients, inboxes: inbox, apps: app, disconnects: [] }, inbox, app };
}

describe('chaos exactly-once checker', () => {
  it('finds nothing wrong when every acked send is stored and shown once, and attributes sends by start time', () => {
    const sends = [acked(0, 1, 10), acked(2, 1, 20), acked(1, 1, 1500), acked(3, 1, 1999)];
    const { rows, unexpected } = checkChaos(cleanRecord(sends).rec, windows);
    assert.deepEqual(rows.map((r) => [r.fault, r.acked, r.failed, r.lost, r.duplicated, r.appMissed, r.survivorsDropped, r.problems.length]),
      [['baseline', 2, 0, 0, 0, 0, 0, 0], ['kill -9 gateway-1', 2, 0, 0, 0, 0, 0, 0]]);
    assert.equal(unexpected, 0);
    assert.equal(rows[1].recoveryMs, 700);
  });

  it('counts an acked msgId missing from one recipient inbox as lost, even when the app saw it', () => {
    const sends = [acked(2, 1, 1100)];
    const { rec, inbox } = cleanRecord(sends);
    inbox.set(4, []);
    const [, row] = checkChaos(rec, windows).rows;
    assert.equal(row.lost, 1);
    assert.equal(row.appMissed, 0);
    assert.match(row.problems[0].detail, /user 4's inbox lacks acked m2\.1/);
  });

  it('counts a send stored twice under two msgIds, or the same msgId twice, as one duplicated send', () => {
    const sends = [acked(0, 1, 1100), acked(0, 2, 1200)];
    const { rec, inbox } = cleanRecord(sends);
    inbox.get(1)!.push({ sender: 0, n: 1, msgId: 'other', seq: 9 }); // retry stored under a new msgId
    inbox.get(0)!.push({ sender: 0, n: 2, msgId: 'm0.2', seq: 10 }); // the same msgId twice
    const [, row] = checkChaos(rec, windows).rows;
    assert.equal(row.duplicated, 2);
    assert.equal(row.lost, 0);
    assert.match(row.problems.map((p) => p.detail).join('\n'), /user 1's inbox holds it 2× \(msgIds m0\.1@seq 1, other@seq 9\)/);
  });

  it('counts a message an app emitted twice as duplicated and one it never emitted as app-missed', () => {
    const sends = [acked(2, 1, 100), acked(2, 2, 200)];
    const { rec, app } = cleanRecord(sends);
    app.get(3)!.push({ sender: 2, n: 1, msgId: 'm2.1', seq: 1 });
    app.set(4, app.get(4)!.filter((e) => e.n !== 2));
    const [row] = checkChaos(rec, windows).rows;
    assert.equal(row.duplicated, 1);
    assert.equal(row.appMissed, 1);
    assert.match(row.problems.find((p) => p.kind === 'app-missed')!.detail, /user 4's app never emitted seq 2/);
  });

  it('reports a send the SDK gave up on as failed, not lost, and still checks it for duplicates', () => {
    const gaveUp: ChaosSend = { sender: 0, n: 1, startedAtMs: 1100 };
    const rec: ChaosRecord = {
      sends: [gaveUp], recipients, disconnects: [],
      inboxes: new Map([[0, [{ sender: 0, n: 1, msgId: 'a', seq: 1 }, { sender: 0, n: 1, msgId: 'b', seq: 2 }]], [1, []]]),
      apps: new Map(),
    };
    const [, row] = checkChaos(rec, windows).rows;
    assert.deepEqual([row.acked, row.failed, row.lost, row.duplicated, row.appMissed], [0, 1, 0, 1, 1]);
  });

  it('counts each surviving user dropped in a window once, and not the clients of the killed gateway', () => {
    const { rec } = cleanRecord([]);
    const disconnects = [
      { user: 0, atMs: 1200, code: 1100, reason: 'socket closed' }, // on the killed gateway: expected
      { user: 1, atMs: 1300, code: 1100, reason: 'socket closed' },
      { user: 1, atMs: 1400, code: 1100, reason: 'socket closed' },
      { user: 2, atMs: 500, code: 3005, reason: 'draining' },
    ];
    const rows = checkChaos({ ...rec, disconnects }, windows).rows;
    assert.deepEqual(rows.map((r) => r.survivorsDropped), [1, 1]);
    assert.deepEqual(rows[1].problems, [{ kind: 'dropped', detail: 'user 1: 1100 socket closed' }]);
  });

  it('counts entries of unknown sends or at non-recipients as unexpected', () => {
    const { rec, inbox } = cleanRecord([acked(0, 1, 10)]);
    inbox.set(3, [{ sender: 0, n: 1, msgId: 'm0.1', seq: 1 }, { sender: 9, n: 9, msgId: 'x', seq: 2 }]);
    assert.equal(checkChaos(rec, windows).unexpected, 2);
  });
});
