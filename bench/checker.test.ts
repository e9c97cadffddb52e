import { strict as assert } from 'node:assert';
import { addDevice, ByteLog, checkDevice, emptyLoss, ReceiptBook, SendStatus } from './checker';

/** Status bytes for ids 1..n (index 0 unused). */
function statuses(...s: number[]): Uint8Array {
  return Uint8Array.from([0, ...s]);
}

describe('bench loss and duplicate checker', () => {
  const { ACCEPTED, UNKNOWN, REJECTED, NONE } = SendStatus;

  it('finds nothing wrong when every accepted message arrived once', () => {
    const book = new ReceiptBook();
    for (const id of [1, 2, 3]) book.record(7, id);
    book.record(1, 1); // own send copied back to the sender
    const c = checkDevice(book, [1, 7], (s) => (s === 7 ? statuses(ACCEPTED, ACCEPTED, ACCEPTED) : statuses(ACCEPTED)));
    assert.deepEqual({ ...c, missing: c.missing.length }, { expected: 4, delivered: 4, duplicated: 0, unexpected: 0, unknownDelivered: 0, missing: 0 });
  });

  it('counts a missing accepted message as lost and a repeated one as duplicated', () => {
    const book = new ReceiptBook();
    assert.equal(book.record(7, 1), false);
    assert.equal(book.record(7, 1), true, 'second copy is a duplicate');
    book.record(7, 3);
    const c = checkDevice(book, [7], () => statuses(ACCEPTED, ACCEPTED, ACCEPTED));
    assert.equal(c.expected, 3);
    assert.equal(c.delivered, 2);
    assert.equal(c.duplicated, 1);
    assert.deepEqual(c.missing, [{ sender: 7, id: 2 }]);
  });

  it('does not expect sends with an unknown outcome, and flags deliveries of refused or unsent ones', () => {
    const book = new ReceiptBook();
    book.record(7, 1); // unknown outcome, delivered: fine
    book.record(7, 3); // refused at the gateway: must not exist
    book.record(7, 9); // never sent
    book.record(99, 1); // a sender that does not target this device
    const c = checkDevice(book, [7], () => statuses(UNKNOWN, UNKNOWN, REJECTED, NONE));
    assert.equal(c.expected, 0);
    assert.equal(c.missing.length, 0);
    assert.equal(c.unknownDelivered, 1);
    assert.equal(c.unexpected, 3);
  });

  it('splits lost deliveries into lost pushes (found by sync) and lost messages', () => {
    const book = new ReceiptBook();
    const c = checkDevice(book, [4], () => statuses(ACCEPTED, ACCEPTED, ACCEPTED));
    const sum = addDevice(emptyLoss(), c, (ref) => ref.id !== 2);
    assert.equal(sum.lost, 3);
    assert.equal(sum.lostPushes, 2);
    assert.equal(sum.lostMessages, 1);
  });

  it('ByteLog grows past its initial size and trims to the highest id', () => {
    const log = new ByteLog(2);
    log.set(1000, ACCEPTED);
    assert.equal(log.get(1000), ACCEPTED);
    assert.equal(log.get(999), 0);
    assert.equal(log.toBytes().length, 1001);
    assert.throws(() => log.set(0, 1), RangeError);
  });
});
