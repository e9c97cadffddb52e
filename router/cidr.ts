/**
 * IP addresses and CIDR blocks, IPv4 and IPv6, for the route API's region table and trusted-proxy
 * list. Addresses become bigints so a prefix match is one mask and one Map lookup per prefix
 * length, whatever the table size. IPv4-mapped IPv6 (::ffff:10.1.2.3, what a dual-stack socket
 * reports for an IPv4 peer) is treated as the IPv4 address, so IPv4 blocks match it.
 */
import { isIP } from 'node:net';

export interface IpAddr {
  family: 4 | 6;
  value: bigint;
}

export interface Cidr extends IpAddr {
  prefixLen: number;
}

const BITS = { 4: 32, 6: 128 } as const;

/** Parses an IPv4 or IPv6 address (a zone like "%eth0" is dropped); undefined if it is not one. */
export function parseIp(text: string): IpAddr | undefined {
  let s = text.trim();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const family = isIP(s);
  if (family === 4) return { family: 4, value: v4ToBigInt(s) };
  if (family !== 6) return undefined;
  const value = v6ToBigInt(s);
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffff_ffffn };
  return { family: 6, value };
}

/** "10.0.0.0/8", "2001:db8::/32"; a bare address is a single-host block (/32 or /128). */
export function parseCidr(text: string): Cidr | undefined {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  if (addrText.includes('%')) return undefined;
  const family = isIP(addrText);
  if (family !== 4 && family !== 6) return undefined;
  const bits = BITS[family];
  let prefixLen: number = bits;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) return undefined;
    prefixLen = Number(p);
  }
  let value = family === 4 ? v4ToBigInt(addrText) : v6ToBigInt(addrText);
  let fam: 4 | 6 = family;
  // "::ffff:10.0.0.0/104" is the IPv4 block 10.0.0.0/8, and must match the IPv4 form too.
  if (family === 6 && prefixLen >= 96 && value >> 32n === 0xffffn) {
    fam = 4;
    value &= 0xffff_ffffn;
    prefixLen -= 96;
  }
  // Host bits set ("10.1.2.3/8") are cleared rather than refused: the operator's intent is clear.
  return { family: fam, value: value & mask(fam, prefixLen), prefixLen };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c)}/${c.prefixLen}`;
}

export function formatIp(a: IpAddr): string {
  if (a.family === 4) return [24n, 16n, 8n, 0n].map((sh) => String((a.value >> sh) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let sh = 112n; sh >= 0n; sh -= 16n) groups.push(((a.value >> sh) & 0xffffn).toString(16));
  return groups.join(':');
}

/**
 * A longest-prefix-match table from CIDR blocks to values. Bounded by whoever builds it (the
 * router config); lookups cost at most one Map lookup per distinct prefix length in the table.
 */
export class CidrMap<T> {
  /** family -> prefix length (longest first) -> masked network -> value */
  private readonly byFamily: Record<4 | 6, Array<{ prefixLen: number; nets: Map<bigint, T> }>> = { 4: [], 6: [] };
  private count = 0;

  /** Adds a block; the same block twice with different values is an error (an ambiguous table). */
  set(cidr: Cidr, value: T): void {
    const levels = this.byFamily[cidr.family];
    let level = levels.find((l) => l.prefixLen === cidr.prefixLen);
    if (!level) {
      level = { prefixLen: cidr.prefixLen, nets: new Map() };
      levels.push(level);
      levels.sort((a, b) => b.prefixLen - a.prefixLen);
    }
    const net = cidr.value & mask(cidr.family, cidr.prefixLen);
    if (level.nets.has(net)) {
      if (level.nets.get(net) !== value) throw new RangeError(`${formatCidr(cidr)} is listed twice with different values`);
      return;
    }
    level.nets.set(net, value);
    this.count++;
  }

  /** The value of the most specific block holding `addr`, if any. */
  lookup(addr: IpAddr): T | undefined {
    for (const level of this.byFamily[addr.family]) {
      const v = level.nets.get(addr.value & mask(addr.family, level.prefixLen));
      if (v !== undefined) return v;
    }
    return undefined;
  }

  get size(): number {
    return this.count;
  }
}

/** A set of CIDR blocks (e.g. trusted proxies). */
export class CidrSet {
  private readonly map = new CidrMap<true>();

  constructor(blocks: Iterable<Cidr> = []) {
    for (const b of blocks) this.map.set(b, true);
  }

  has(addr: IpAddr): boolean {
    return this.map.lookup(addr) === true;
  }

  get size(): number {
    return this.map.size;
  }
}

function mask(family: 4 | 6, prefixLen: number): bigint {
  const bits = BigInt(BITS[family]);
  const all = (1n << bits) - 1n;
  const hostBits = bits - BigInt(prefixLen);
  return ((all >> hostBits) << hostBits) & all;
}

/** Only called on text net.isIP() accepted as IPv4. */
function v4ToBigInt(s: string): bigint {
  return s.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** Only called on text net.isIP() accepted as IPv6 (so "::" appears at most once). */
function v6ToBigInt(s: string): bigint {
  let text = s;
  // An embedded IPv4 tail ("::ffff:1.2.3.4") stands for the last two 16-bit groups.
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = v4ToBigInt(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':').map((g) => BigInt(parseInt(g, 16))));
  const dbl = text.indexOf('::');
  let groups: bigint[];
  if (dbl < 0) {
    groups = groupsOf(text);
  } else {
    const head = groupsOf(text.slice(0, dbl));
    const rest = groupsOf(text.slice(dbl + 2));
    groups = [...head, ...new Array<bigint>(8 - head.length - rest.length).fill(0n), ...rest];
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}
