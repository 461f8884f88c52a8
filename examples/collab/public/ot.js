// Plain-text operations in ot.js's wire format, for the editor page: an operation is an
// array covering the whole document, n > 0 retains n characters, a string inserts
// itself, -n deletes n characters. Positions are UTF-16 code units (JavaScript string
// indices), as the server (edgews.ot) counts them. Results are canonical (no empty
// components, neighbours merged, an insert before a delete at the same place), and
// transform breaks ties as ot.js does: in transform(a, b), a's insert goes first.

const isRetain = (c) => typeof c === 'number' && c > 0;
const isDelete = (c) => typeof c === 'number' && c < 0;
const isInsert = (c) => typeof c === 'string';

// Builders that keep an operation canonical.
export function retain(op, n) {
  if (n <= 0) return op;
  if (isRetain(op[op.length - 1])) op[op.length - 1] += n; else op.push(n);
  return op;
}

export function insert(op, s) {
  if (s === '') return op;
  const last = op[op.length - 1];
  if (isInsert(last)) op[op.length - 1] = last + s;
  else if (isDelete(last)) {
    // an insert goes before a delete at the same place
    const before = op[op.length - 2];
    if (isInsert(before)) op[op.length - 2] = before + s; else op.splice(op.length - 1, 0, s);
  } else op.push(s);
  return op;
}

export function del(op, n) {
  if (n <= 0) return op;
  if (isDelete(op[op.length - 1])) op[op.length - 1] -= n; else op.push(-n);
  return op;
}

export function baseLength(op) {
  let n = 0;
  for (const c of op) n += isInsert(c) ? 0 : Math.abs(c);
  return n;
}

export function isNoop(op) {
  return op.every(isRetain);
}

export function apply(doc, op) {
  if (baseLength(op) !== doc.length) throw new Error(`operation base length ${baseLength(op)} != document length ${doc.length}`);
  let out = '';
  let i = 0;
  for (const c of op) {
    if (isRetain(c)) { out += doc.slice(i, i + c); i += c; } else if (isInsert(c)) out += c; else i -= c;
  }
  return out;
}

// One operation doing a then b.
export function compose(a, b) {
  const out = [];
  let i = 0;
  let j = 0;
  let x = a[i++];
  let y = b[j++];
  for (;;) {
    if (x === undefined && y === undefined) return out;
    if (isDelete(x)) { del(out, -x); x = a[i++]; continue; }
    if (isInsert(y)) { insert(out, y); y = b[j++]; continue; }
    if (x === undefined || y === undefined) throw new Error('compose: the lengths do not match');
    if (isRetain(x) && isRetain(y)) {
      const n = Math.min(x, y);
      retain(out, n);
      [x, y] = step(x, y, n);
    } else if (isInsert(x) && isDelete(y)) {
      const n = Math.min(x.length, -y);
      [x, y] = step(x, y, n);
    } else if (isInsert(x) && isRetain(y)) {
      const n = Math.min(x.length, y);
      insert(out, x.slice(0, n));
      [x, y] = step(x, y, n);
    } else { // retain x, delete y
      const n = Math.min(x, -y);
      del(out, n);
      [x, y] = step(x, y, n);
    }
  }
  // consumes n units of x and y, fetching the next components when one runs out
  function step(cx, cy, n) {
    cx = isInsert(cx) ? cx.slice(n) : cx > 0 ? cx - n : cx + n;
    cy = isInsert(cy) ? cy.slice(n) : cy > 0 ? cy - n : cy + n;
    if (cx === 0 || cx === '') cx = a[i++];
    if (cy === 0 || cy === '') cy = b[j++];
    return [cx, cy];
  }
}

// [a', b'] for a and b made on the same document: apply(apply(d, a), b') ===
// apply(apply(d, b), a').
export function transform(a, b) {
  const a1 = [];
  const b1 = [];
  let i = 0;
  let j = 0;
  let x = a[i++];
  let y = b[j++];
  for (;;) {
    if (x === undefined && y === undefined) return [a1, b1];
    if (isInsert(x)) { insert(a1, x); retain(b1, x.length); x = a[i++]; continue; }
    if (isInsert(y)) { retain(a1, y.length); insert(b1, y); y = b[j++]; continue; }
    if (x === undefined || y === undefined) throw new Error('transform: the base lengths differ');
    let n;
    if (isRetain(x) && isRetain(y)) {
      n = Math.min(x, y);
      retain(a1, n);
      retain(b1, n);
    } else if (isDelete(x) && isDelete(y)) {
      n = Math.min(-x, -y);
    } else if (isDelete(x)) { // y retains
      n = Math.min(-x, y);
      del(a1, n);
    } else { // x retains, y deletes
      n = Math.min(x, -y);
      del(b1, n);
    }
    x = x > 0 ? x - n : x + n;
    y = y > 0 ? y - n : y + n;
    if (x === 0) x = a[i++];
    if (y === 0) y = b[j++];
  }
}

// A position moved through op. Text inserted exactly at the position moves it only
// when own is true (the author's caret follows its own typing).
export function transformIndex(pos, op, own = false) {
  let old = 0; // position in the document before op
  let moved = pos;
  for (const c of op) {
    if (isInsert(c)) {
      if (old < pos || (old === pos && own)) moved += c.length;
    } else if (isRetain(c)) {
      old += c;
      if (old > pos) break;
    } else {
      const n = -c;
      if (old < pos) moved -= Math.min(n, pos - old);
      old += n;
      if (old > pos) break;
    }
  }
  return moved;
}

export function transformSelection(sel, op, own = false) {
  if (!sel) return sel;
  return { ranges: sel.ranges.map((r) => ({ anchor: transformIndex(r.anchor, op, own), head: transformIndex(r.head, op, own) })) };
}

// The operation that turns before into after, found as one changed span (what a
// textarea's input event does); never splits a surrogate pair.
export function diff(before, after) {
  let p = 0;
  const max = Math.min(before.length, after.length);
  while (p < max && before.charCodeAt(p) === after.charCodeAt(p)) p++;
  if (p > 0 && isHigh(before.charCodeAt(p - 1))) p--;
  let s = 0;
  while (s < max - p && before.charCodeAt(before.length - 1 - s) === after.charCodeAt(after.length - 1 - s)) s++;
  if (s > 0 && isLow(before.charCodeAt(before.length - s))) s--;
  const op = [];
  retain(op, p);
  insert(op, after.slice(p, after.length - s));
  del(op, before.length - p - s);
  retain(op, s);
  return op;
}

const isHigh = (u) => u >= 0xd800 && u <= 0xdbff;
const isLow = (u) => u >= 0xdc00 && u <= 0xdfff;
