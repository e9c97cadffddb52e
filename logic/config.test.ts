import { strict as assert } from 'node:assert';
import { ConfigError } from '../common/config';
import { loadLogicConfig } from './config';

describe('loadLogicConfig', () => {
  it('has defaults', () => {
    assert.deepEqual(loadLogicConfig({}, []), {
      host: '127.0.0.1', port: 7190, maxGroupMembers: 100, dedupWindowMs: 86_400_000, maxContentBytes: 16_384,
    });
  });

  it('reads env and lets flags win', () => {
    const cfg = loadLogicConfig(
      { IM_LOGIC_ADDR: '0.0.0.0:9000', IM_MAX_GROUP_MEMBERS: '50', IM_DEDUP_WINDOW: '10m', IM_MAX_CONTENT_BYTES: '1024' },
      ['--addr', '10.0.0.1:9100'],
    );
    assert.deepEqual(cfg, { host: '10.0.0.1', port: 9100, maxGroupMembers: 50, dedupWindowMs: 600_000, maxContentBytes: 1024 });
  });

  it('names the field of a bad value', () => {
    assert.throws(() => loadLogicConfig({ IM_MAX_GROUP_MEMBERS: 'lots' }, []),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_MAX_GROUP_MEMBERS');
    assert.throws(() => loadLogicConfig({ IM_LOGIC_ADDR: 'nowhere' }, []),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_LOGIC_ADDR');
    assert.throws(() => loadLogicConfig({ IM_DEDUP_WINDOW: 'forever' }, []),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_DEDUP_WINDOW');
  });
});
