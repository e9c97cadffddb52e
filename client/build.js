#!/usr/bin/env node
/**
 * Builds the SDK package (client/package.json) into client/dist; `npm pack` in client/ runs it.
 *
 * The SDK's sources stay where the server uses them too (client/, proto/, common/); esbuild
 * bundles what client/sdk.ts reaches into one file per target, so the package carries its own
 * copy of the generated codecs, the error codes and host:port parsing, and depends on nothing of
 * the server (only on `ws`, for WebSocket in Node; @bufbuild/protobuf's wire runtime is bundled):
 *
 *   dist/node.js           CommonJS for Node (TCP, TLS, WebSocket through `ws`); ESM importers
 *                          get its named exports too
 *   dist/browser.mjs       ESM for browsers and bundlers (WebSocket and fetch only; the "browser"
 *                          map of package.json swaps platform.ts for platform-browser.ts)
 *   dist/browser.global.js the same as a classic script: the global `ImSdk`
 *   dist/types/            declarations by tsc, entry client/sdk.d.ts
 *
 * Needs the generated codecs: run `npm run gen` (or `npm run build`) at the repo root first.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const root = path.resolve(here, '..');
const dist = path.join(here, 'dist');
const entry = path.join(here, 'sdk.ts');

/** What a browser build must not contain: a Node module, or a require() of anything. */
const NODE_ONLY = /\bfrom\s*["']node:|\brequire\(["']|\bimport\(["']node:/;

async function main() {
  if (!fs.existsSync(path.join(root, 'proto', 'gen-ts', 'client.ts'))) {
    throw new Error('proto/gen-ts is missing: run `npm run gen` at the repository root first');
  }
  const esbuild = require('esbuild');
  fs.rmSync(dist, { recursive: true, force: true });
  const common = { entryPoints: [entry], bundle: true, target: 'es2022', legalComments: 'none', logLevel: 'warning' };
  await esbuild.build({ ...common, platform: 'node', format: 'cjs', outfile: path.join(dist, 'node.js'), external: ['ws'] });
  await esbuild.build({ ...common, platform: 'browser', format: 'esm', outfile: path.join(dist, 'browser.mjs') });
  await esbuild.build({ ...common, platform: 'browser', format: 'iife', globalName: 'ImSdk', outfile: path.join(dist, 'browser.global.js') });
  for (const f of ['browser.mjs', 'browser.global.js']) {
    const m = NODE_ONLY.exec(fs.readFileSync(path.join(dist, f), 'utf8'));
    if (m) throw new Error(`dist/${f} imports a Node module: ${m[0]}`);
  }
  declarations();
}

/**
 * tsc writes the declarations of everything sdk.ts reaches. The generated codecs' declarations
 * name @bufbuild/protobuf's reader and writer (in the codec objects' method types, never in the
 * SDK's API); the package bundles that runtime instead of depending on it, so those two names
 * point at opaque local declarations. And no declaration the API reaches names Node's Buffer, so
 * a browser project type-checks without @types/node.
 */
function declarations() {
  const out = path.join(dist, 'types');
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'),
    '--declaration', '--emitDeclarationOnly', '--outDir', out, '--rootDir', root,
    '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node', '--strict', '--skipLibCheck',
    '--esModuleInterop', '--types', 'node', entry], { cwd: root, stdio: 'inherit' });
  const gen = path.join(out, 'proto', 'gen-ts', 'client.d.ts');
  const from = 'from "@bufbuild/protobuf/wire";';
  const text = fs.readFileSync(gen, 'utf8');
  if (!text.includes(from)) throw new Error(`${path.relative(here, gen)}: no import of @bufbuild/protobuf/wire to replace`);
  fs.writeFileSync(gen, text.split(from).join('from "./wire-runtime";'));
  // Frames are Buffers in Node and Uint8Arrays in a browser: declare what both are.
  const wire = path.join(out, 'proto', 'wire.d.ts');
  fs.writeFileSync(wire, fs.readFileSync(wire, 'utf8').replace(/\): Buffer;/g, '): Uint8Array;'));
  fs.writeFileSync(path.join(out, 'proto', 'gen-ts', 'wire-runtime.d.ts'),
    '/** Stand-ins for @bufbuild/protobuf\'s BinaryReader and BinaryWriter, which the SDK bundles. */\n'
    + 'export declare class BinaryReader { private readonly __reader; }\n'
    + 'export declare class BinaryWriter { private readonly __writer; }\n');
}

main().catch((err) => {
  process.stderr.write(`client/build.js: ${err.stack || err}\n`);
  process.exitCode = 1;
});
