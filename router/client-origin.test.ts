import * as assert from 'node:assert/strict';
import { BadRequestError } from '../common/errors';
import { formatIp } from './cidr';
import { buildProxySet, buildRegionMap, clientIp, MAX_FORWARDED_HOPS, resolveRegion } from './client-origin';

const regions = buildRegionMap([
  { cidr: '10.0.0.0/8', region: 'eu-west' },
  { cidr: '10.99.0.0/16', region: 'eu-north' },
  { cidr: '192.168.0.0/16', region: 'us-east' },
  { cidr: '2001:db8::/32', region: 'ap-south' },
]);

describe('client origin', () => {
  describe('clientIp', () => {
    const rules = { trustedProxies: buildProxySet(['127.0.0.1', '172.16.0.0/12', 'fd00::/8']), maxForwardedHops: MAX_FORWARDED_HOPS };
    const ipOf = (peer: string | undefined, xff?: string, r = rules) => {
      const a = clientIp(peer, xff, r);
      return a && formatIp(a);
    };

    it('is the TCP peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
      const none = { trustedProxies: buildProxySet([]), maxForwardedHops: MAX_FORWARDED_HOPS };
      assert.equal(ipOf('10.1.1.1', '192.168.1.1', none), '10.1.1.1');
      assert.equal(ipOf('::ffff:10.1.1.1', undefined, none), '10.1.1.1');
      assert.equal(ipOf(undefined, '192.168.1.1', none), undefined);
    });

    it('ignores X-Forwarded-For from an untrusted peer', () => {
      assert.equal(ipOf('10.1.1.1', '192.168.1.1'), '10.1.1.1');
    });

    it('believes a trusted proxy, back to the first hop that is not trusted', () => {
      assert.equal(ipOf('127.0.0.1', '192.168.1.1'), '192.168.1.1');
      assert.equal(ipOf('::ffff:127.0.0.1', '192.168.1.1'), '192.168.1.1');
      // client-forged, real client, inner proxy: the forged entry is left of an untrusted hop.
      assert.equal(ipOf('127.0.0.1', '10.6.6.6, 192.168.1.1, 172.16.0.9'), '192.168.1.1');
      assert.equal(ipOf('fd00::1', '2001:db8::5'), '2001:db8:0:0:0:0:0:5');
      assert.equal(ipOf('127.0.0.1', '192.168.1.1:5555'), '192.168.1.1');
      assert.equal(ipOf('127.0.0.1', '[2001:db8::5]:443'), '2001:db8:0:0:0:0:0:5');
    });

    it('stops at a garbled entry, and is bounded on a long header', () => {
      assert.equal(ipOf('127.0.0.1', '192.168.1.1, not-an-ip'), '127.0.0.1');
      assert.equal(ipOf('127.0.0.1', '192.168.1.1, not-an-ip, 172.16.0.2'), '172.16.0.2');
      const chain = ['192.168.1.1', ...new Array<string>(40).fill('172.16.0.1')].join(', ');
      assert.equal(ipOf('127.0.0.1', chain), '172.16.0.1', 'gave up after the hop bound, on a trusted hop');
      assert.equal(ipOf('127.0.0.1', '172.16.0.1, 172.16.0.2'), '172.16.0.1', 'all trusted: the leftmost');
    });
  });

  describe('resolveRegion', () => {
    const ip = clientIp('10.99.1.1', undefined, { trustedProxies: buildProxySet([]), maxForwardedHops: 1 });

    it('takes ?region= over X-IM-Region over the IP', () => {
      assert.deepEqual(resolveRegion(ip, { regionParam: 'us-east', regionHeader: 'ap-south' }, regions), { region: 'us-east', regionSource: 'param' });
      assert.deepEqual(resolveRegion(ip, { regionParam: '', regionHeader: ' ap-south ' }, regions), { region: 'ap-south', regionSource: 'header' });
      assert.deepEqual(resolveRegion(ip, { regionParam: null, regionHeader: undefined }, regions), { region: 'eu-north', regionSource: 'ip' });
    });

    it('falls back to no region for an unknown or unmapped IP', () => {
      const outside = clientIp('8.8.8.8', undefined, { trustedProxies: buildProxySet([]), maxForwardedHops: 1 });
      assert.deepEqual(resolveRegion(outside, { regionParam: null, regionHeader: undefined }, regions), { region: '', regionSource: 'none' });
      assert.deepEqual(resolveRegion(undefined, { regionParam: null, regionHeader: undefined }, regions), { region: '', regionSource: 'none' });
    });

    it('refuses a malformed explicit region with BAD_REQUEST', () => {
      for (const bad of ['eu west', 'x'.repeat(65), '-eu', 'eu/west', 'é']) {
        assert.throws(() => resolveRegion(ip, { regionParam: bad, regionHeader: undefined }, regions), BadRequestError, bad);
        assert.throws(() => resolveRegion(ip, { regionParam: null, regionHeader: bad }, regions), /X-IM-Region/, bad);
      }
    });
  });

  describe('building the tables', () => {
    it('names the bad row of a region table', () => {
      assert.throws(() => buildRegionMap([{ cidr: '10.0.0.0/8', region: 'eu' }, { cidr: '10.0.0/8', region: 'eu' }]), /row 2: "10.0.0\/8" is not/);
      assert.throws(() => buildRegionMap([{ cidr: '10.0.0.0/8', region: 'eu west' }]), /row 1 \(10.0.0.0\/8\): region "eu west"/);
      assert.throws(() => buildRegionMap([{ cidr: '10.0.0.0/8', region: 'eu' }, { cidr: '10.0.0.0/8', region: 'us' }]), /row 2: 10.0.0.0\/8 is listed twice/);
      assert.throws(() => buildProxySet(['127.0.0.1', 'proxy.local']), /entry 2: "proxy.local"/);
    });
  });
});
