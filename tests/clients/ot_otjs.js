#!/usr/bin/env node
// ot.js (npm `ot` 0.0.15) as the reference for lua/edgews/ot.lua.
//
//   node tests/clients/ot_otjs.js CASES.json > RESULTS.json
//
// CASES.json is an array of cases made by spec/unit/ot_otjs_spec.lua:
//   { doc, a, b, c, cursors: [n...], ranges: [{anchor, head}...] }
// a and b are concurrent operations on doc; c applies to apply(doc, a). For each case
// this prints ot.js's answers (ops in their JSON form, documents as JS strings, so
// astral characters count two, as in the Lua engine):
//   { na, nb: fromJSON(a|b).toJSON()       normalised inputs
//     ap, bp: transform(a, b)              or terr: the error message
//     dab, dba: apply(apply(doc, a), bp), apply(apply(doc, b), ap)
//     da: a.apply(doc), comp: a.compose(c) or cerr, dc: comp.apply(doc)
//     inv: a.invert(doc)
//     cur: Range(p, p).transform(a).head for each cursor, rng: ranges through a }
// Exits 1 with a message on stderr if the input cannot be read.
'use strict';
const fs = require('fs');
const ot = require('ot');

const TextOperation = ot.TextOperation;
const Range = ot.Selection.Range;

function op(json) {
  return TextOperation.fromJSON(Array.isArray(json) ? json : []);
}

function attempt(fn) {
  try {
    return { value: fn() };
  } catch (e) {
    return { error: String(e && e.message || e) };
  }
}

let cases;
try {
  cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
} catch (e) {
  process.stderr.write(`ot_otjs: cannot read cases: ${e.message}\n`);
  process.exit(1);
}

const out = cases.map((k) => {
  const r = {};
  const a = op(k.a);
  const b = op(k.b);
  r.na = a.toJSON();
  r.nb = b.toJSON();
  const t = attempt(() => TextOperation.transform(a, b));
  if (t.error) {
    r.terr = t.error;
  } else {
    const [ap, bp] = t.value;
    r.ap = ap.toJSON();
    r.bp = bp.toJSON();
    r.dab = bp.apply(a.apply(k.doc));
    r.dba = ap.apply(b.apply(k.doc));
  }
  const da = attempt(() => a.apply(k.doc));
  if (da.error) {
    r.aerr = da.error;
    return r;
  }
  r.da = da.value;
  r.inv = a.invert(k.doc).toJSON();
  if (k.c !== undefined) {
    const comp = attempt(() => a.compose(op(k.c)));
    if (comp.error) {
      r.cerr = comp.error;
    } else {
      r.comp = comp.value.toJSON();
      r.dc = comp.value.apply(k.doc);
    }
  }
  r.cur = (k.cursors || []).map((p) => new Range(p, p).transform(a).head);
  r.rng = (k.ranges || []).map((x) => {
    const y = new Range(x.anchor, x.head).transform(a);
    return { anchor: y.anchor, head: y.head };
  });
  return r;
});

process.stdout.write(JSON.stringify(out));
