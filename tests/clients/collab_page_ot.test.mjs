// The editor page's OT module (examples/collab/public/ot.js) against ot.js 0.0.15
// (the reference the server is checked against): apply, compose, transform and the
// textarea diff on random operations over text with astral characters, component for
// component; cursor moves against edgews.ot's rule (inserts at the position move it
// only for its own author). Run by spec/unit/client_spec.lua.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as mine from '../../examples/collab/public/ot.js';

const require = createRequire(import.meta.url);
const { TextOperation } = require('ot');

function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = seeded(20261203);
const int = (n) => Math.floor(rnd() * n);
const ALPHA = ['a', 'b', 'c', ' ', 'é', '😀', '\n'];
const text = (n) => Array.from({ length: n }, () => ALPHA[int(ALPHA.length)]).join('');

// A random operation on doc that never splits a surrogate pair.
function randomOp(doc) {
  const op = new TextOperation();
  let i = 0;
  while (i < doc.length) {
    let n = 1 + int(Math.min(5, doc.length - i));
    if (i + n < doc.length && /[\udc00-\udfff]/.test(doc[i + n])) n++;
    const r = rnd();
    if (r < 0.2) op.insert(text(1 + int(3)));
    if (r < 0.5) op.retain(n); else if (r < 0.75) op.delete(n); else { op.insert(text(1 + int(2))); op.retain(n); }
    i += n;
  }
  if (rnd() < 0.3) op.insert(text(1 + int(3)));
  return op;
}

test('apply, compose and transform give ot.js\'s results', () => {
  for (let k = 0; k < 2000; k++) {
    const doc = text(int(20));
    const a = randomOp(doc);
    const b = randomOp(doc);
    assert.equal(mine.apply(doc, a.toJSON()), a.apply(doc));
    const [a1, b1] = mine.transform(a.toJSON(), b.toJSON());
    const [ra1, rb1] = TextOperation.transform(a, b);
    assert.deepEqual([a1, b1], [ra1.toJSON(), rb1.toJSON()]);
    const c = randomOp(a.apply(doc));
    assert.deepEqual(mine.compose(a.toJSON(), c.toJSON()), a.compose(c).toJSON());
  }
});

test('diff: one span, canonical, never splitting a surrogate pair', () => {
  for (let k = 0; k < 2000; k++) {
    const before = text(int(15));
    const after = randomOp(before).apply(before);
    const op = mine.diff(before, after);
    assert.equal(mine.apply(before, op), after);
    assert.deepEqual(op, TextOperation.fromJSON(op).toJSON());
  }
  assert.deepEqual(mine.diff('a😀b', 'a😃b'), [1, '😃', -2, 1]);
  assert.deepEqual(mine.diff('', 'x'), ['x']);
  assert.deepEqual(mine.diff('abc', 'abc'), [3]);
});

test('transformIndex: before, inside a deleted span, and at an insert (own or not)', () => {
  assert.equal(mine.transformIndex(3, [1, 'xy', 4]), 5);
  assert.equal(mine.transformIndex(3, [3, 'xy', 2]), 3);
  assert.equal(mine.transformIndex(3, [3, 'xy', 2], true), 5);
  assert.equal(mine.transformIndex(3, [1, -3, 1]), 1);
  assert.equal(mine.transformIndex(5, [1, -3, 1]), 2);
  assert.equal(mine.transformIndex(2, [-2, 'q']), 0);
  assert.equal(mine.transformIndex(2, [-2, 'q'], true), 1);
});
