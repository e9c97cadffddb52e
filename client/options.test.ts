import * as assert from 'node:assert/strict';
import { resolveOptions } from './options';

describe('client/options: tls', () => {
  const base = { routerUrl: 'http://127.0.0.1:7180', token: 't' };
  const resolve = (tls: unknown) => resolveOptions({ ...base, tls } as Parameters<typeof resolveOptions>[0], { randomId: () => 'id', defaultTransport: 'tcp' }).tls;

  it('is off unless asked for; true means TLS with the system CAs', () => {
    assert.equal(resolve(undefined), undefined);
    assert.equal(resolve(false), undefined);
    assert.deepEqual(resolve(true), {});
  });

  it('keeps a CA and a server name', () => {
    assert.deepEqual(resolve({ ca: 'PEM', servername: 'gw.example.com' }), { ca: 'PEM', servername: 'gw.example.com' });
  });

  it('refuses nonsense at construction', () => {
    assert.throws(() => resolve('yes'), /ImClientOptions.tls must be a boolean or an object/);
    assert.throws(() => resolve({ servername: '' }), /ImClientOptions.tls.servername/);
  });
});
