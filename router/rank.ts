/**
 * Ranking gateways for one route request. Pure: the same input and the same random sequence give
 * the same order, so tests inject a seeded source.
 *
 * Order: the client's region first, then the rest; within each, a weighted random order that
 * favours spare capacity (weight = (1 - load)^loadExponent) instead of a strict least-loaded sort.
 * A strict sort sends a whole wave of reconnecting clients (a gateway draining 50k of them) to
 * the one node that looked emptiest at that instant; sampling spreads the wave in proportion to
 * headroom, and the load reports that follow correct the weights within a heartbeat.
 * Full gateways (load 1, or capacity 0 = unknown) go after every gateway with room, nearest region
 * first: each would refuse the client, and a far node with room beats a near one that says no.
 */
import type { GatewayStatus } from './api';

export interface RankOptions {
  /** The client's region; '' or absent = unknown, so no region is preferred. */
  region?: string;
  /** Uniform source in [0, 1); Math.random by default. Called once per gateway with room, in input order. */
  random?: () => number;
  /** Higher = stronger preference for idle gateways; 0 = uniform among gateways with room. */
  loadExponent?: number;
}

export const RANK_DEFAULTS = {
  // (1-0.1)^2 / (1-0.9)^2 = 81: a 10% node is picked first ~81x as often as a 90% one.
  loadExponent: 2,
} as const;

interface Keyed<G> {
  g: G;
  tier: number;
  key: number;
  load: number;
}

/** Draining gateways are left out; the rest come back best first, as a new array. */
export function rankGateways<G extends GatewayStatus>(gateways: readonly G[], options: RankOptions = {}): G[] {
  const k = options.loadExponent ?? RANK_DEFAULTS.loadExponent;
  if (!Number.isFinite(k) || k < 0) throw new RangeError(`loadExponent must be a finite number >= 0, got ${k}`);
  const random = options.random ?? Math.random;
  const region = options.region ?? '';
  const keyed: Keyed<G>[] = [];
  for (const g of gateways) {
    if (g.draining) continue;
    const load = loadRatio(g);
    const near = region === '' || g.region === region;
    const full = load >= 1;
    const weight = full ? 0 : (1 - load) ** k;
    // Efraimidis-Spirakis: ordering by Exp(1)/weight is sampling without replacement with
    // probability proportional to weight. 1 - random() is in (0, 1], so the log is finite.
    const key = weight > 0 ? -Math.log(1 - random()) / weight : Infinity;
    keyed.push({ g, tier: (full ? 2 : 0) + (near ? 0 : 1), key, load });
  }
  keyed.sort((a, b) => a.tier - b.tier || a.key - b.key || a.load - b.load || compareNodes(a.g.node, b.g.node));
  return keyed.map((e) => e.g);
}

/** Load in [0, 1]: 1 when full, over capacity, or capacity unknown (0). */
export function loadRatio(g: Pick<GatewayStatus, 'connections' | 'capacity'>): number {
  if (!(g.capacity > 0)) return 1;
  return Math.min(1, Math.max(0, g.connections / g.capacity));
}

function compareNodes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
