import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FaultRow } from './chaos-check';
import { renderSection, renderTable, whyLines, writeReliability } from './chaos-report';
import { parseChaosOptions, UsageError } from './options';

function row(fault: string, over: Partial<FaultRow> = {}): FaultRow {
  return { fault, acked: 100, failed: 0, lost: 0, duplicated: 0, appMissed: 0, survivorsDropped: 0, recoveryMs: 1500, problems: [], ...over };
}

describe('chaos report', () => {
  const rows = [
    row('none (steady load)', { recoveryMs: undefined }),
    row('kill -9 one logic', { duplicated: 1, problems: [{ kind: 'duplicated', detail: 'send 3:7: stored twice' }] }),
    row('kill -9 router', { survivorsDropped: 2, recoveryMs: undefined, problems: [{ kind: 'dropped', detail: 'user 4: 1100 closed' }] }),
  ];

  it('prints one line per fault, with the recovery time or that it did not recover', () => {
    const lines = renderTable(rows).split('\n');
    assert.equal(lines.length, 2 + rows.length);
    assert.equal(lines[2], '| none (steady load) | 100 | 0 | 0 | 0 | 0 | 0 | — |');
    assert.equal(lines[3], '| kill -9 one logic | 100 | 0 | 0 | 1 | 0 | 0 | 1.5 s |');
    assert.match(lines[4], /\| 2 \| not recovered \|$/);
  });

  it('writes a why line for every non-zero cell: the known cause, else says it is not analysed, with evidence', () => {
    const why = whyLines(rows, { 'kill -9 one logic': { duplicated: 'the retry took over the claim' } });
    assert.deepEqual(why, [
      '- **kill -9 one logic, duplicated 1**: the retry took over the claim. Seen: send 3:7: stored twice',
      '- **kill -9 router, survivors dropped 2**: cause not analysed yet. Seen: user 4: 1100 closed',
      '- **kill -9 router, not recovered**: the system did not serve again within the deadline.',
    ]);
  });

  it('replaces its section of RELIABILITY.md and keeps the text around it', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'im-chaos-report-')), 'RELIABILITY.md');
    const rep = { dateIso: 'd', command: 'c', loadAvgStart: [1, 2, 3], loadAvgEnd: [4, 5, 6], setup: 's', rows, unexpected: 0, durationS: 60 };
    writeReliability(file, renderSection(rep, {}), '# Reliability\n');
    fs.appendFileSync(file, '\nHand-written analysis.\n');
    writeReliability(file, renderSection({ ...rep, dateIso: 'second run' }, {}), '# unused\n');
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^# Reliability\n/);
    assert.match(text, /second run/);
    assert.doesNotMatch(text, /Run d,/);
    assert.match(text, /Load average \(1\/5\/15 min\) 1\.00 2\.00 3\.00 at the start, 4\.00 5\.00 6\.00 at the end/);
    assert.match(text, /Hand-written analysis\.\n$/);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  });

  it('takes only --target distributed, and names a bad option', () => {
    assert.deepEqual(parseChaosOptions(['--target', 'distributed']), { users: 40, ratePerS: 100, write: true });
    assert.deepEqual(parseChaosOptions(['--target=distributed', '--users', '60', '--rate', '50', '--no-write']), { users: 60, ratePerS: 50, write: false });
    assert.throws(() => parseChaosOptions([]), UsageError);
    assert.throws(() => parseChaosOptions(['--target', 'embedded']), /--target distributed/);
    assert.throws(() => parseChaosOptions(['--target', 'distributed', '--sweep']), /--sweep does not apply/);
    assert.throws(() => parseChaosOptions(['--target', 'distributed', '--rate', 'max']), /--rate/);
  });
});
