/**
 * Where a route request comes from: the client's IP (the TCP peer, or X-Forwarded-For when the
 * peer is a proxy the operator trusts) and its region (asked for explicitly, or looked up from the
 * IP in the operator's CIDR table). Pure functions over strings, so every rule is unit-testable.
 */
import { BadRequestError } from '../common/errors';
import { CidrMap, CidrSet, IpAddr, parseCidr, parseIp } from './cidr';

/** How the region was chosen; echoed in the reply so an operator can see why a client went where. */
export type RegionSource = 'param' | 'header' | 'ip' | 'none';

export interface RegionChoice {
  /** '' when unknown: no region is preferred. */
  region: string;
  regionSource: RegionSource;
}

export interface ProxyRules {
  /** Peers whose X-Forwarded-For is believed. Empty: the header is ignored. */
  trustedProxies: CidrSet;
  /** X-Forwarded-For entries examined, right to left; bounds the work a long header causes. */
  maxForwardedHops: number;
}

export const REGION_HEADER = 'x-im-region';
export const MAX_FORWARDED_HOPS = 16;

/** Region labels: what gateways put in IM_REGION and clients send; bounded and URL/header safe. */
const REGION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidRegion(v: string): boolean {
  return REGION_RE.test(v);
}

export interface RegionRequest {
  /** The `region` query parameter. */
  regionParam: string | null | undefined;
  /** The X-IM-Region header. */
  regionHeader: string | undefined;
}

/** The client's region. Throws BadRequestError for a malformed explicit region. */
export function resolveRegion(ip: IpAddr | undefined, req: RegionRequest, regions: CidrMap<string>): RegionChoice {
  // An explicit choice wins over the IP: a client knows it is roaming, or a test wants a region.
  const param = req.regionParam ?? '';
  if (param !== '') return { region: checkRegion('region parameter', param), regionSource: 'param' };
  const header = (req.regionHeader ?? '').trim();
  if (header !== '') return { region: checkRegion('X-IM-Region header', header), regionSource: 'header' };
  const fromIp = ip && regions.lookup(ip);
  if (fromIp !== undefined) return { region: fromIp, regionSource: 'ip' };
  return { region: '', regionSource: 'none' };
}

/**
 * The client's address; undefined when the peer is unknown (socket already gone). X-Forwarded-For is believed only when the peer is a trusted proxy, and
 * then only back to the first hop that is not itself trusted (walking right to left): anything
 * further left was written by the client and could name any address it likes.
 */
export function clientIp(peer: string | undefined, forwardedFor: string | undefined, rules: ProxyRules): IpAddr | undefined {
  let current = peer === undefined ? undefined : parseIp(peer);
  if (!current || !forwardedFor || rules.trustedProxies.size === 0) return current;
  const hops = forwardedFor.split(',');
  for (let i = hops.length - 1, seen = 0; i >= 0 && seen < rules.maxForwardedHops; i--, seen++) {
    if (!rules.trustedProxies.has(current)) return current;
    const hop = parseIp(stripPort(hops[i].trim()));
    // A garbled entry: the trusted proxy to its right is the last address we can vouch for.
    if (!hop) return current;
    current = hop;
  }
  return current;
}

function checkRegion(what: string, v: string): string {
  if (!isValidRegion(v)) throw new BadRequestError(`${what} must be 1-64 letters, digits, ".", "_" or "-", got "${v.slice(0, 80)}"`);
  return v;
}

/** Some proxies append a port ("1.2.3.4:5678", "[2001:db8::1]:443"). */
function stripPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed) return bracketed[1];
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(hop);
  return v4WithPort ? v4WithPort[1] : hop;
}

/** One row of the operator's region table. */
export interface RegionCidr {
  cidr: string;
  region: string;
}

/** Validates and indexes the region table; a RangeError names the bad row. */
export function buildRegionMap(rows: readonly RegionCidr[]): CidrMap<string> {
  const map = new CidrMap<string>();
  rows.forEach((row, i) => {
    const cidr = parseCidr(row.cidr);
    if (!cidr) throw new RangeError(`row ${i + 1}: "${String(row.cidr).slice(0, 80)}" is not an IPv4 or IPv6 CIDR`);
    if (typeof row.region !== 'string' || !isValidRegion(row.region)) {
      throw new RangeError(`row ${i + 1} (${row.cidr}): region "${String(row.region).slice(0, 80)}" must be 1-64 letters, digits, ".", "_" or "-"`);
    }
    try {
      map.set(cidr, row.region);
    } catch (err) {
      throw new RangeError(`row ${i + 1}: ${(err as Error).message}`);
    }
  });
  return map;
}

/** Validates the trusted-proxy list (CIDRs or single addresses); a RangeError names the bad entry. */
export function buildProxySet(cidrs: readonly string[]): CidrSet {
  return new CidrSet(cidrs.map((c, i) => {
    const cidr = parseCidr(c);
    if (!cidr) throw new RangeError(`entry ${i + 1}: "${String(c).slice(0, 80)}" is not an IPv4 or IPv6 address or CIDR`);
    return cidr;
  }));
}
