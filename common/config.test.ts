import * as assert from 'node:assert/strict';
import { ConfigError, loadLogLevel, parseDurationMs, parseFlags, parseHostPort, Settings } from './config';
import { namesField } from './config.test-support';

describe('config', () => {
  it('parses durations, host:port and flags', () => {
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('5s'), 5000);
    assert.equal(parseDurationMs('24h'), 86_400_000);
    assert.equal(parseDurationMs('soon'), undefined);
    assert.deepEqual(parseHostPort('127.0.0.1:7100'), { host: '127.0.0.1', port: 7100 });
    assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 });
    assert.equal(parseHostPort('nope'), undefined);
    assert.deepEqual(parseFlags(['--a', '1', '--b=2', '--c']), { a: '1', b: '2', c: 'true' });
  });
  it('names the field of a bad value', () => {
    const s = new Settings({ IM_X: 'abc', IM_ADDR: 'host' });
    assert.throws(() => s.int('IM_X', 1), (e: any) => e instanceof ConfigError && e.field === 'IM_X');
    assert.throws(() => s.addr('IM_ADDR', '1.2.3.4:5'), /IM_ADDR/);
    assert.equal(new Settings({}, { port: '9' }).int('IM_PORT', 1, { flag: 'port' }), 9);
  });
  it('loadLogLevel accepts the five levels and names IM_LOG_LEVEL otherwise', () => {
    assert.equal(loadLogLevel({}, []), 'info');
    assert.equal(loadLogLevel({ IM_LOG_LEVEL: 'debug' }, ['--log-level', 'warn']), 'warn');
    assert.throws(() => loadLogLevel({ IM_LOG_LEVEL: 'verbose' }, []), namesField('IM_LOG_LEVEL'));
  });
});
