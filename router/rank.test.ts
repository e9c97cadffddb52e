import * as assert from 'node:assert/strict';
import type { GatewayStatus } from './api';
import { loadRatio, rankGateways, RankOptions } from './rank';
import { seededRandom } from './router.test-support';

function gw(node: string, region: string, connections: number, over: Partial<GatewayStatus> = {}): GatewayStatus {
  return { node, addr: '10.0.0.1:7100', region, zone: `${region}-a`, connections, capacity: 100, draining: false, ...over };
}

const nodes = (gs: GatewayStatus[]) => gs.map((g) => g.node);

/** How often each node comes first over `waves` route requests. */
function firstPicks(gateways: GatewayStatus[], waves: number, options: RankOptions): Map<string, number> {
  const counts = new Map(gateways.map((g) => [g.node, 0]));
  for (let i = 0; i < waves; i++) {
    const first = rankGateways(gateways, options)[0].node;
    counts.set(first, counts.get(first)! + 1);
  }
  return counts;
}

describe('rankGateways', () => {
  it('puts the client\'s region first, whatever the load elsewhere', () => {
    const gateways = [gw('us-1', 'us-east', 0), gw('eu-1', 'eu-west', 80), gw('us-2', 'us-east', 5), gw('eu-2', 'eu-west', 60)];
    const random = seededRandom(1);
    for (let i = 0; i < 200; i++) {
      const ranked = nodes(rankGateways(gateways, { region: 'eu-west', random }));
      assert.deepEqual(ranked.slice(0, 2).sort(), ['eu-1', 'eu-2'], `wave ${i}: ${ranked}`);
      assert.deepEqual(ranked.slice(2).sort(), ['us-1', 'us-2']);
    }
  });

  it('with no known region, ranks everything on load alone', () => {
    const gateways = [gw('us-1', 'us-east', 90), gw('eu-1', 'eu-west', 0)];
    const picks = firstPicks(gateways, 500, { region: '', random: seededRandom(2) });
    assert.ok(picks.get('eu-1')! > 450, `${[...picks]}`);
    // An unknown region label is no better than none: every gateway is equally far.
    const picksUnknown = firstPicks(gateways, 500, { region: 'ap-south', random: seededRandom(2) });
    assert.deepEqual(picksUnknown, picks);
  });

  it('a wave of 1000 requests over 3 equal gateways spreads, instead of herding onto one', () => {
    const gateways = [gw('a', 'eu', 30), gw('b', 'eu', 30), gw('c', 'eu', 30)];
    const picks = firstPicks(gateways, 1000, { region: 'eu', random: seededRandom(3) });
    for (const [node, n] of picks) assert.ok(n >= 270 && n <= 400, `${node} got ${n} of 1000`);
  });

  it('a gateway at 90% load gets far fewer first picks than one at 10%', () => {
    const gateways = [gw('busy', 'eu', 90), gw('idle', 'eu', 10)];
    const picks = firstPicks(gateways, 1000, { region: 'eu', random: seededRandom(4) });
    // Expected ratio with the default exponent: 0.81 / 0.01 = 81.
    assert.ok(picks.get('busy')! < 40, `busy got ${picks.get('busy')}`);
    assert.ok(picks.get('idle')! > 960, `idle got ${picks.get('idle')}`);
  });

  it('orders by load on average: mean position follows load', () => {
    const gateways = [gw('l50', 'eu', 50), gw('l0', 'eu', 0), gw('l75', 'eu', 75), gw('l25', 'eu', 25)];
    const random = seededRandom(5);
    const positionSum = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      rankGateways(gateways, { random }).forEach((g, pos) => positionSum.set(g.node, (positionSum.get(g.node) ?? 0) + pos));
    }
    const byMeanPosition = [...positionSum].sort((a, b) => a[1] - b[1]).map(([n]) => n);
    assert.deepEqual(byMeanPosition, ['l0', 'l25', 'l50', 'l75']);
  });

  it('loadExponent 0 ignores load among gateways with room; a larger one favours idle nodes more', () => {
    const gateways = [gw('busy', 'eu', 80), gw('idle', 'eu', 20)];
    const flat = firstPicks(gateways, 1000, { loadExponent: 0, random: seededRandom(6) });
    assert.ok(flat.get('busy')! > 420 && flat.get('busy')! < 580, `busy got ${flat.get('busy')}`);
    const linear = firstPicks(gateways, 1000, { loadExponent: 1, random: seededRandom(6) }); // 0.2 : 0.8
    const square = firstPicks(gateways, 1000, { loadExponent: 2, random: seededRandom(6) }); // 0.04 : 0.64
    assert.ok(square.get('busy')! < linear.get('busy')! && linear.get('busy')! < flat.get('busy')!);
    assert.throws(() => rankGateways(gateways, { loadExponent: -1 }), /loadExponent/);
  });

  it('leaves draining gateways out', () => {
    const gateways = [gw('a', 'eu', 0, { draining: true }), gw('b', 'eu', 50), gw('c', 'us', 0, { draining: true })];
    assert.deepEqual(nodes(rankGateways(gateways, { region: 'eu', random: seededRandom(7) })), ['b']);
  });

  it('puts full gateways (or unknown capacity) last, near region first, then by load', () => {
    const gateways = [
      gw('eu-full', 'eu', 100), gw('us-over', 'us', 150), gw('eu-nocap', 'eu', 0, { capacity: 0 }),
      gw('us-room', 'us', 95), gw('eu-room', 'eu', 99),
    ];
    assert.deepEqual(nodes(rankGateways(gateways, { region: 'eu', random: seededRandom(8) })),
      ['eu-room', 'us-room', 'eu-full', 'eu-nocap', 'us-over']);
  });

  it('is pure: same input and seed give the same order, and the input is not touched', () => {
    const gateways = [gw('a', 'eu', 10), gw('b', 'eu', 20), gw('c', 'us', 5), gw('d', 'eu', 30)];
    const copy = structuredClone(gateways);
    const one = nodes(rankGateways(gateways, { region: 'eu', random: seededRandom(9) }));
    const two = nodes(rankGateways(gateways, { region: 'eu', random: seededRandom(9) }));
    assert.deepEqual(one, two);
    assert.deepEqual(gateways, copy);
    assert.deepEqual(rankGateways([], {}), []);
  });

  it('loadRatio: capacity 0 or over capacity counts as full', () => {
    assert.equal(loadRatio({ connections: 0, capacity: 0 }), 1);
    assert.equal(loadRatio({ connections: 150, capacity: 100 }), 1);
    assert.equal(loadRatio({ connections: 25, capacity: 100 }), 0.25);
  });
});
