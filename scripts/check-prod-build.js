#!/usr/bin/env node
/**
 * `npm run build:prod` step: fails if the production output (dist/, built by tsconfig.build.json)
 * holds test code. tsconfig.build.json leaves tests and test helpers out, but tsc still compiles
 * a file a production file imports, so an import of a test helper would bring it back: this
 * names it.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const TEST_FILE = /(\.test|\.test-support|^test-support|^test-backends)\.js$/;
const TEST_DIR = new Set(['test', 'k8s']);
const found = [];
(function walk(dir, top) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (top && TEST_DIR.has(e.name)) found.push(p); else walk(p, false);
    } else if (TEST_FILE.test(e.name)) found.push(p);
  }
})(dist, true);
if (found.length > 0) {
  process.stderr.write(`test code in the production build (a production file imports it?):\n  ${found.map((p) => path.relative(dist, p)).join('\n  ')}\n`);
  process.exit(1);
}
