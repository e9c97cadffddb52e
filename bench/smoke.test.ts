import { strict as assert } from 'node:assert';
import { parseBenchOptions } from './options';
import { renderMarkdown } from './results';
import { runBench } from './run';

describe('bench smoke: one-to-one against embedded for ~2 s', function () {
  this.timeout(120_000);

  it('runs over real TCP and returns a complete result with nothing lost or duplicated', async () => {
    const options = parseBenchOptions(['one-to-one', '--users', '20', '--duration', '2s', '--warmup', '0', '--no-ceiling', '--quiet', '--no-write']);
    const lines: string[] = [];
    const r = await runBench(options, { log: (l) => lines.push(l), env: process.env });
    const json = JSON.parse(JSON.stringify(r)); // what lands in bench/results/<id>.json

    assert.equal(json.schema, 'im-bench/1');
    assert.equal(json.scenario, 'one-to-one');
    assert.equal(json.target.kind, 'embedded');
    assert.equal(json.setup.connections, 20);
    assert.equal(json.phases.length, 1);
    const p = json.phases[0];
    assert.equal(p.mode, 'max');
    assert.ok(p.acceptedPerS > 0, 'sends were accepted');
    assert.ok(p.deliveriesPerS > 0, 'pushes were delivered');
    for (const k of ['p50', 'p95', 'p99', 'max']) assert.equal(typeof p.e2eMs[k], 'number', `e2eMs.${k}`);
    assert.ok(p.e2eMs.count > 0 && p.ackMs.count > 0);
    assert.ok(p.processes.some((x: { role: string }) => x.role === 'embedded'), 'server process sampled');
    assert.ok(p.processes.some((x: { role: string }) => x.role === 'loadgen'), 'load generator sampled');

    assert.ok(json.check.expected > 0);
    assert.equal(json.check.lost, 0, `lost: ${JSON.stringify(json.check)}`);
    assert.equal(json.check.duplicated, 0);
    assert.equal(json.check.unexpected, 0);
    assert.equal(json.check.delivered, json.check.expected);
    assert.ok(json.goals.some((g: { name: string }) => g.name === 'lost deliveries'));
    assert.ok(Array.isArray(json.environment.topBefore));
    assert.match(renderMarkdown(r), /\*\*lost 0\*\*/);
  });
});
