import { strict as assert } from 'node:assert';
import { parseCommandLine, UsageError } from './args';

const usage = (text: RegExp) => (e: unknown) => e instanceof UsageError && text.test(e.message);
const strict = { values: ['to', 'limit'], switches: ['tls'] };

describe('common/args', () => {
  it('reads value flags, switches and positionals; `--` ends the flags; a single dash is a positional', () => {
    const { positionals, flags } = parseCommandLine(['send', '--to', 'bob', '--limit=5', '-x', '--tls', '--', '--hi'], strict);
    assert.deepEqual(positionals, ['send', '-x', '--hi']);
    assert.deepEqual([...flags], [['to', 'bob'], ['limit', '5'], ['tls', 'true']]);
    assert.equal(parseCommandLine(['--to', '--tls'], strict).flags.get('to'), '--tls', 'a value flag takes the next argument as it is');
  });

  it('strict: an unknown flag, a missing value, a switch with a value and a flag given twice are usage errors', () => {
    assert.throws(() => parseCommandLine(['--nope'], strict), usage(/unknown option --nope/));
    assert.throws(() => parseCommandLine(['--to'], strict), usage(/option --to needs a value/));
    assert.throws(() => parseCommandLine(['--tls=yes'], strict), usage(/option --tls takes no value/));
    assert.throws(() => parseCommandLine(['--to', 'a', '--to=b'], strict), usage(/option --to given twice/));
  });

  it('optional switches take `=value`, and the next argument when takesNext says so', () => {
    const spec = { values: ['users'], optional: { names: ['sweep', 'quiet'], takesNext: (n: string, v: string) => n === 'sweep' && /^[\d,]+$/.test(v) } };
    assert.deepEqual([...parseCommandLine(['--sweep', '1,2', 'one'], spec).flags], [['sweep', '1,2']]);
    assert.deepEqual(parseCommandLine(['--sweep', 'one'], spec).positionals, ['one']);
    assert.equal(parseCommandLine(['--quiet', '12'], spec).flags.get('quiet'), 'true');
    assert.equal(parseCommandLine(['--quiet=false'], spec).flags.get('quiet'), 'false');
  });

  it('lenient: any --name is a flag, with the next argument unless that is a flag too; the last one wins', () => {
    const { positionals, flags } = parseCommandLine(['--a', '1', '--b=2', '--c', '--d', 'x', '--d', 'y'], { lenient: true });
    assert.deepEqual(positionals, []);
    assert.deepEqual(Object.fromEntries(flags), { a: '1', b: '2', c: 'true', d: 'y' });
  });
});
