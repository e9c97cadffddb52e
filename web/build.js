#!/usr/bin/env node
/**
 * `npm run build` step: bundles the web chat page (web/app.ts and the SDK it imports from
 * client/) for browsers with esbuild, and copies index.html and style.css, into dist/web/, which
 * embedded mode serves (embedded/web.ts).
 *
 * The SDK's Node-only modules (TCP, TLS, `ws`, node:http) are swapped for its browser platform by
 * the "browser" map of client/package.json, which esbuild applies with platform 'browser'; any
 * node:* import that still reaches the page fails the build.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const web = __dirname;
const out = path.join(web, '..', 'dist', 'web');
const noNode = {
  name: 'no-node',
  setup(build) {
    build.onResolve({ filter: /^(node:[a-z_]+|ws)$/ }, (args) => ({
      errors: [{ text: `${args.path} reached the browser bundle (imported by ${args.importer}): the SDK's browser platform must not need it` }],
    }));
  },
};

async function main() {
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(web, 'app.ts')],
    outfile: path.join(out, 'app.js'),
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: ['es2022'],
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [noNode],
  });
  for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(web, f), path.join(out, f));
}

main().catch((err) => {
  process.stderr.write(`web build failed: ${err.message}\n`);
  process.exit(1);
});
