#!/usr/bin/env node
/**
 * `npm run build` step: bundles the web chat page (web/app.ts and the SDK it imports from
 * client/) for browsers with esbuild, and copies index.html and style.css, into dist/web/, which
 * embedded mode serves (embedded/web.ts).
 *
 * The SDK is written for Node; until it has a browser build of its own, its Node-only imports are
 * resolved here to small stand-ins in web/shims/ (Buffer, EventEmitter, randomUUID, an http.get on
 * fetch) or to an empty module (TCP, TLS and the `ws` package, which a page never uses).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const web = __dirname;
const out = path.join(web, '..', 'dist', 'web');
const shim = (name) => path.join(web, 'shims', `${name}.ts`);

const SHIMS = {
  'node:events': shim('events'),
  'node:crypto': shim('crypto'),
  'node:buffer': shim('buffer'),
  'node:path': shim('path'),
  'node:http': shim('http'),
  'node:https': shim('http'),
  'node:net': shim('empty'),
  'node:tls': shim('empty'),
  ws: shim('empty'),
};

const nodeShims = {
  name: 'node-shims',
  setup(build) {
    build.onResolve({ filter: /^(node:[a-z_]+|ws)$/ }, (args) => {
      const target = SHIMS[args.path];
      if (!target) return { errors: [{ text: `${args.path} has no browser stand-in in web/build.js (imported by ${args.importer})` }] };
      return { path: target };
    });
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
    plugins: [nodeShims],
    inject: [shim('buffer'), shim('timers')],
    define: { __dirname: '"/"' },
  });
  for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(web, f), path.join(out, f));
}

main().catch((err) => {
  process.stderr.write(`web build failed: ${err.message}\n`);
  process.exit(1);
});
