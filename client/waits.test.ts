import * as assert from 'node:assert/strict';
import { Waits } from './waits';

describe('client/waits', () => {
  it('close() ends every pending sleep at once, and later sleeps return at once', async () => {
    const w = new Waits();
    const sleeps = Array.from({ length: 50 }, () => w.sleep(60_000));
    assert.equal(w.size, 50);
    w.close();
    await Promise.all(sleeps); // would hang the test (and fail by timeout) if close() missed one
    assert.equal(w.size, 0);
    await w.sleep(60_000); // already closed: returns at once
    assert.equal(w.closed, true);
  });

  it('a sleep that ends by itself, or a released signal, leaves nothing registered', async () => {
    const w = new Waits();
    await Promise.all(Array.from({ length: 50 }, () => w.sleep(1)));
    const calls = Array.from({ length: 50 }, () => w.signal());
    assert.equal(w.size, 50);
    for (const c of calls) c.release();
    assert.equal(w.size, 0, 'every wait unregistered when it ended');
    const kept = w.signal();
    w.close();
    assert.equal(kept.signal.aborted, true);
  });
});
