import { strict as assert } from 'node:assert';
import { checkNonEmpty, checkNumber, compileNumbers, numberOption, OptionError } from './options';

const names = (owner: string, field: string, text: RegExp) => (e: unknown) =>
  e instanceof OptionError && e instanceof RangeError && e.owner === owner && e.field === field
  && e.message.startsWith(`${owner}.${field} `) && text.test(e.message);

describe('common/options', () => {
  it('checkNumber takes positive numbers by default and names owner and field otherwise', () => {
    assert.equal(checkNumber('C', 'f', 0.5), 0.5);
    for (const bad of [0, -1, NaN, Infinity, '3', undefined]) {
      assert.throws(() => checkNumber('C', 'f', bad), names('C', 'f', /must be a positive number/), String(bad));
    }
  });

  it('applies integer, min, max and infinite', () => {
    assert.equal(checkNumber('C', 'n', 0, { integer: true, min: 0 }), 0);
    assert.throws(() => checkNumber('C', 'n', 1.5, { integer: true }), names('C', 'n', /a positive integer, got 1.5/));
    assert.throws(() => checkNumber('C', 'n', 2 ** 53, { integer: true }), names('C', 'n', /integer/));
    assert.throws(() => checkNumber('C', 'n', -1, { min: 0 }), names('C', 'n', /a number >= 0/));
    assert.throws(() => checkNumber('C', 'n', 11, { max: 10 }), names('C', 'n', /<= 10/));
    assert.equal(checkNumber('C', 'n', Infinity, { infinite: true }), Infinity);
    assert.throws(() => checkNumber('C', 'n', NaN, { infinite: true }), names('C', 'n', /got NaN/));
  });

  it('numberOption gives the default only for an absent value', () => {
    assert.equal(numberOption('C', 'f', undefined, 7), 7);
    assert.equal(numberOption('C', 'f', 3, 7), 3);
    assert.throws(() => numberOption('C', 'f', 0, 7), names('C', 'f', /got 0/));
  });

  it('compileNumbers completes every field of the defaults, each checked by its rule', () => {
    const defaults = { a: 1, b: 2, c: 0 };
    assert.deepEqual(compileNumbers('C', { b: 5 }, defaults, { integer: true }, { c: { integer: true, min: 0 } }), { a: 1, b: 5, c: 0 });
    assert.deepEqual(compileNumbers('C', { a: undefined }, defaults), defaults);
    assert.throws(() => compileNumbers('C', { b: 2.5 }, defaults, { integer: true }), names('C', 'b', /integer/));
    assert.throws(() => compileNumbers('C', { c: -1 }, defaults, {}, { c: { min: 0 } }), names('C', 'c', />= 0/));
  });

  it('checkNonEmpty takes non-empty strings only', () => {
    assert.equal(checkNonEmpty('C', 's', 'x'), 'x');
    for (const bad of ['', 1, undefined]) assert.throws(() => checkNonEmpty('C', 's', bad), names('C', 's', /non-empty string/));
  });
});
