import assert from 'node:assert/strict';
import { CatchUp } from './checkpoint';

describe('SQLite checkpoint worker: when the writer is told to restart the log', () => {
  /** The choices after rounds that saw these log lengths (every frame copied). */
  function choices(restartFrames: number, logs: number[], canHandOver = true): string[] {
    const c = new CatchUp(restartFrames);
    return logs.map((log) => c.after({ log, checkpointed: log }, canHandOver));
  }

  it('waits while the log is short, then catches up until few frames arrive per round', () => {
    // Arrivals per round: 700, 300, 150, then 50.
    assert.deepEqual(choices(1000, [400, 800, 1500, 1800, 1950, 2000]), ['wait', 'wait', 'again', 'again', 'again', 'hand-over']);
  });

  it('hands over once rounds stop shrinking what arrives, however much that is', () => {
    // 5,000 frames arrive per round, every round: waiting longer would never get below a bound.
    assert.deepEqual(choices(1000, [5000, 10000]), ['again', 'hand-over']);
    // Growing arrivals too.
    assert.deepEqual(choices(1000, [5000, 11000]), ['again', 'hand-over']);
  });

  it('takes a round held up by its fsync for a spike, not a plateau, and goes on until arrivals settle again', () => {
    // Arrivals per round: 1,200, 300, 200, then 2,300 (one round waited 40 ms for its fsync), 400, 210, 220.
    assert.deepEqual(choices(1000, [1200, 1500, 1700, 4000, 4400, 4610, 4830]),
      ['again', 'again', 'again', 'again', 'again', 'again', 'hand-over']);
  });

  it('hands over after the most catch-up rounds even while arrivals still shrink slowly', () => {
    const logs: number[] = [];
    let log = 1000;
    for (let arrived = 100_000; logs.length < CatchUp.MAX_CATCH_UP_ROUNDS; arrived -= 100) logs.push(log += arrived);
    const got = choices(1000, logs);
    assert.deepEqual(got.slice(0, -1), Array(CatchUp.MAX_CATCH_UP_ROUNDS - 1).fill('again'));
    assert.equal(got.at(-1), 'hand-over');
  });

  it('counts frames a round could not copy (a reader on an older snapshot) as backlog', () => {
    const c = new CatchUp(1000);
    assert.equal(c.after({ log: 2000, checkpointed: 2000 }, true), 'again');
    assert.equal(c.after({ log: 2050, checkpointed: 1000 }, true), 'again'); // 50 arrived, 1,050 left
  });

  it('after the log started over, waits again; without a writer to tell it never hands over', () => {
    assert.deepEqual(choices(1000, [1500, 1510, 20, 40]), ['again', 'hand-over', 'wait', 'wait']);
    assert.deepEqual(choices(1000, [1500, 1510, 1520], false), ['wait', 'wait', 'wait']);
  });
});
