import { strict as assert } from 'node:assert';
import { ConfigError } from './config';

/** An assert.throws matcher: a ConfigError naming `field`, in its field and its message. */
export const namesField = (field: string) => (e: unknown) => {
  assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
  assert.equal(e.field, field);
  assert.match(e.message, new RegExp(field));
  return true;
};
