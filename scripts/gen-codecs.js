#!/usr/bin/env node
/**
 * `npm run gen` step: generates the static codecs (proto/gen-ts) with buf + ts-proto, then applies
 * two edits to the generated code that the push path needs and ts-proto has no option for. Each
 * edit must match; if a ts-proto upgrade changes its output, the build fails here instead of
 * silently losing the fix.
 *
 * - Every decoded message starts from createBase*(), which allocated `new Uint8Array(0)` per bytes
 *   field: one ArrayBuffer per Delivery and per Frame, the largest single cost of decoding a batch.
 *   A shared empty Buffer is safe: it has no elements to change. (A plain Uint8Array where there
 *   is no Buffer: the client SDK runs these codecs in browsers too.)
 * - uint64 fields pass through longToNumber(x) = Number(x.toString()). proto/binary's reader already
 *   returns a number (exact, refused above 2^53), so numbers skip the string round trip.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'proto', 'gen-ts');
fs.rmSync(out, { recursive: true, force: true });
execFileSync(path.join(root, 'node_modules', '.bin', 'buf'), ['generate', '--template', 'proto/buf.gen.yaml'], { cwd: root, stdio: 'inherit' });

function edit(file, text, from, to, what) {
  if (!text.includes(from)) throw new Error(`${path.relative(root, file)}: generated code changed, cannot apply "${what}"`);
  return text.split(from).join(to);
}

for (const file of fs.readdirSync(out, { recursive: true }).map((f) => path.join(out, f)).filter((f) => f.endsWith('.ts'))) {
  let text = fs.readFileSync(file, 'utf8');
  if (text.includes('new Uint8Array(0)')) {
    text = edit(file, text, 'new Uint8Array(0)', 'EMPTY_BYTES', 'shared empty bytes');
    text = edit(file, text, 'from "@bufbuild/protobuf/wire";\n',
      'from "@bufbuild/protobuf/wire";\n\n/** The default of every bytes field (scripts/gen-codecs.js): a Buffer in Node, as WireReader decodes the others; a Uint8Array in a browser. */\nconst EMPTY_BYTES: Uint8Array = typeof Buffer === "function" ? Buffer.alloc(0) : new Uint8Array(0);\n', 'shared empty bytes');
  }
  if (text.includes('function longToNumber(')) {
    text = edit(file, text, 'function longToNumber(int64: { toString(): string }): number {\n',
      'function longToNumber(int64: { toString(): string }): number {\n  if (typeof int64 === "number") return int64; // proto/binary WireReader\n', 'uint64 numbers');
  }
  fs.writeFileSync(file, text);
}
