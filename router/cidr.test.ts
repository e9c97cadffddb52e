import * as assert from 'node:assert/strict';
import { CidrMap, CidrSet, formatCidr, formatIp, parseCidr, parseIp } from './cidr';

function ip(text: string) {
  const a = parseIp(text);
  assert.ok(a, `${text} should parse`);
  return a;
}

function cidr(text: string) {
  const c = parseCidr(text);
  assert.ok(c, `${text} should parse`);
  return c;
}

describe('cidr', () => {
  it('parses IPv4 and IPv6 addresses, in every IPv6 spelling', () => {
    assert.deepEqual(ip('10.1.2.3'), { family: 4, value: 0x0a010203n });
    assert.deepEqual(ip(' 255.255.255.255 '), { family: 4, value: 0xffffffffn });
    assert.deepEqual(ip('::1'), { family: 6, value: 1n });
    assert.deepEqual(ip('::'), { family: 6, value: 0n });
    assert.deepEqual(ip('2001:db8::'), { family: 6, value: 0x2001_0db8n << 96n });
    assert.deepEqual(ip('2001:DB8:0:0:0:0:0:7'), { family: 6, value: (0x2001_0db8n << 96n) | 7n });
    assert.deepEqual(ip('2001:db8::1:0:0:7'), ip('2001:db8:0:0:1:0:0:7'));
    assert.deepEqual(ip('fe80::1%eth0'), ip('fe80::1'));
    assert.deepEqual(ip('64:ff9b::1.2.3.4'), { family: 6, value: (0x64_ff9bn << 96n) | 0x01020304n });
  });

  it('treats IPv4-mapped IPv6 (a dual-stack socket\'s view of an IPv4 peer) as IPv4', () => {
    assert.deepEqual(ip('::ffff:10.1.2.3'), ip('10.1.2.3'));
    assert.deepEqual(ip('::ffff:a01:203'), ip('10.1.2.3'));
    assert.deepEqual(cidr('::ffff:10.0.0.0/104'), cidr('10.0.0.0/8'));
  });

  it('refuses what is not an address', () => {
    for (const bad of ['', 'localhost', '10.0.0', '10.0.0.256', '1.2.3.4.5', '::g', '1::2::3', '10.0.0.1/8', '[::1]']) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  it('parses CIDRs, clears host bits, and takes a bare address as a single host', () => {
    assert.equal(formatCidr(cidr('10.1.2.3/8')), '10.0.0.0/8');
    assert.equal(formatCidr(cidr('192.168.7.7')), '192.168.7.7/32');
    assert.equal(formatCidr(cidr('2001:db8:abcd::1/32')), '2001:db8:0:0:0:0:0:0/32');
    assert.equal(formatCidr(cidr('::1')), '0:0:0:0:0:0:0:1/128');
    assert.equal(formatCidr(cidr('0.0.0.0/0')), '0.0.0.0/0');
    assert.equal(formatIp(ip('::ffff:1.2.3.4')), '1.2.3.4');
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/8x', '::/129', 'eu-west', '10.0.0.0/8/8', 'fe80::1%eth0/64']) {
      assert.equal(parseCidr(bad), undefined, bad);
    }
  });

  describe('CidrMap', () => {
    const map = new CidrMap<string>();
    map.set(cidr('10.0.0.0/8'), 'ten');
    map.set(cidr('10.20.0.0/16'), 'ten-twenty');
    map.set(cidr('10.20.30.0/24'), 'ten-twenty-thirty');
    map.set(cidr('0.0.0.0/0'), 'anywhere-v4');
    map.set(cidr('2001:db8::/32'), 'doc');
    map.set(cidr('2001:db8:1::/48'), 'doc-1');

    it('answers with the longest matching prefix', () => {
      assert.equal(map.lookup(ip('10.20.30.40')), 'ten-twenty-thirty');
      assert.equal(map.lookup(ip('10.20.31.1')), 'ten-twenty');
      assert.equal(map.lookup(ip('10.21.0.1')), 'ten');
      assert.equal(map.lookup(ip('11.0.0.1')), 'anywhere-v4');
      assert.equal(map.lookup(ip('2001:db8:1:2::3')), 'doc-1');
      assert.equal(map.lookup(ip('2001:db8:2::3')), 'doc');
      assert.equal(map.size, 6);
    });

    it('keeps the families apart, except IPv4-mapped IPv6', () => {
      assert.equal(map.lookup(ip('2001:db9::1')), undefined, 'the IPv4 default route does not cover IPv6');
      assert.equal(map.lookup(ip('::ffff:10.20.30.1')), 'ten-twenty-thirty');
      assert.equal(map.lookup(ip('::a14:1e01')), undefined, 'IPv4-compatible (not mapped) stays IPv6');
    });

    it('refuses one block with two values, and accepts a repeat of the same one', () => {
      map.set(cidr('10.0.0.0/8'), 'ten');
      assert.throws(() => map.set(cidr('10.9.9.9/8'), 'other'), /10\.0\.0\.0\/8 is listed twice/);
      assert.equal(map.lookup(ip('10.9.9.9')), 'ten');
    });
  });

  it('CidrSet matches members of any of its blocks', () => {
    const set = new CidrSet([cidr('127.0.0.1'), cidr('172.16.0.0/12'), cidr('fd00::/8')]);
    assert.ok(set.has(ip('127.0.0.1')));
    assert.ok(set.has(ip('::ffff:127.0.0.1')));
    assert.ok(!set.has(ip('127.0.0.2')));
    assert.ok(set.has(ip('172.31.255.255')));
    assert.ok(!set.has(ip('172.32.0.0')));
    assert.ok(set.has(ip('fd12:3456::1')));
    assert.ok(!set.has(ip('fe80::1')));
  });
});
