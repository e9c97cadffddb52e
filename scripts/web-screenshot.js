#!/usr/bin/env node
/**
 * Makes docs/web-chat.png, the README's picture of the web chat page: starts `npm start`'s system
 * (dist/embedded/main.js, after `npm run build`) on ephemeral ports with a throwaway data dir, has
 * a few users talk through it (two browser pages and the SDK), and screenshots one page with the
 * headless Chromium the web test uses (IM_CHROMIUM_BIN, default /usr/bin/chromium).
 *
 *   node scripts/web-screenshot.js [out.png]
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const root = path.resolve(__dirname, '..');
const out = path.resolve(process.argv[2] ?? path.join(root, 'docs', 'web-chat.png'));
const chromium = process.env.IM_CHROMIUM_BIN ?? '/usr/bin/chromium';

function startSystem(dataDir) {
  const child = spawn(process.execPath, [path.join(root, 'dist', 'embedded', 'main.js')], {
    env: {
      ...process.env, IM_DATA_DIR: dataDir, IM_LOG_LEVEL: 'warn', OTEL_SDK_DISABLED: 'true',
      IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0', IM_HTTP_ADDR: 'off',
      IM_GATEWAY_WS_ADDR: '127.0.0.1:0', IM_WEB_ADDR: '127.0.0.1:0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const web = /web chat (http:\/\/\S+)/.exec(buf);
      if (web) resolve({ child, webUrl: web[1] });
    });
    child.on('exit', (code) => reject(new Error(`embedded system exited (${code}) before printing its URLs`)));
  });
}

async function signIn(browser, webUrl, uid) {
  const page = await (await browser.createBrowserContext()).newPage();
  await page.setViewport({ width: 1000, height: 600 });
  await page.goto(webUrl);
  await page.type('#uid', uid);
  await page.click('#signin-form button');
  await page.waitForSelector('#status[data-state="connected"]');
  return page;
}

async function say(page, text) {
  await page.type('#text', text);
  await page.click('#send');
  await page.waitForFunction((t) => [...document.querySelectorAll('#message-list .body')].some((e) => e.textContent === t), {}, text);
}

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-web-shot-'));
  const { child, webUrl } = await startSystem(dataDir);
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
  try {
    const [alice, bob, carol] = [await signIn(browser, webUrl, 'alice'), await signIn(browser, webUrl, 'bob'), await signIn(browser, webUrl, 'carol')];
    await carol.type('#new-group-name', 'launch team');
    await carol.type('#new-group-members', 'alice, bob');
    await carol.click('#new-group button');
    await carol.waitForFunction(() => document.querySelector('#chat-meta')?.getAttribute('data-conv-id')?.startsWith('g:'));
    await say(carol, 'Release notes are up for review.');
    await bob.type('#new-chat-uid', 'alice');
    await bob.click('#new-chat button');
    await say(bob, 'Hi Alice! Did the deploy go through?');
    const withBob = 'li.conv[data-conv-id="p:alice:bob"]';
    await alice.waitForSelector(`${withBob}[data-unread="1"]`);
    await alice.click(withBob);
    await alice.waitForSelector('#message-list .msg');
    await say(alice, 'Yes, all green. Messages arrive live over the WebSocket.');
    await say(bob, 'Great, thanks!');
    await say(alice, 'I will check the release notes next.');
    await alice.waitForSelector('li.conv[data-conv-id^="g:"][data-unread="1"]'); // the group, still unread
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await alice.screenshot({ path: out, type: 'png' });
    process.stdout.write(`${out}: ${fs.statSync(out).size} bytes\n`);
  } finally {
    await browser.close();
    child.kill('SIGTERM');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`web screenshot failed: ${err.message}\n`);
  process.exit(1);
});
