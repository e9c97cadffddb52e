/**
 * The web chat page (web/, served by `npm start`) in a real headless Chromium, driven over the
 * DevTools protocol with puppeteer-core: two browser pages sign in with development tokens and
 * chat with each other and with a CLI user (the `im` binary, and the SDK in Node) through a real
 * `node dist/embedded/main.js`, one to one and in a group. Checks that messages appear live,
 * unread counts, history paging and the read cursor (on the server, through the SDK).
 *
 * Needs Debian's `chromium` (IM_CHROMIUM_BIN to point elsewhere): without it the suite is skipped
 * loudly, and fails under IM_REQUIRE_INFRA=1 (CI installs it).
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { ImClient } from '../client/sdk';
import { signToken } from '../common/jwt';
import { readSecretFromDataDir } from '../common/secret';
import type { Message } from '../proto/wire';
import { waitFor } from './exactly-once';
import { tempDir } from './harness';
import { REQUIRE_INFRA } from './infra';
import { ServiceProc } from './procs';

const CHROMIUM = process.env.IM_CHROMIUM_BIN ?? '/usr/bin/chromium';
const CLI = path.resolve(__dirname, '..', 'cli', 'main.js');
const WAIT_MS = 15_000;

/** Runs the built `im` CLI against the system; resolves with its stdout lines as JSON. */
function im(args: string[], env: Record<string, string>): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`im ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>));
    });
  });
}

describe('web chat page in headless Chromium', function () {
  this.timeout(120_000);
  const ns = randomBytes(3).toString('hex');
  const alice = `alice-${ns}`;
  const bob = `bob-${ns}`;
  const carol = `carol-${ns}`;
  let proc: ServiceProc | undefined;
  let browser: Browser | undefined;
  let webUrl = '';
  let routerUrl = '';
  let dataDir = '';
  let cliEnv: Record<string, string> = {};
  const pages: Page[] = [];
  const clients: ImClient[] = [];

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      if (REQUIRE_INFRA) throw new Error(`chromium is required (IM_REQUIRE_INFRA=1) but ${CHROMIUM} does not exist (apt-get install chromium)`);
      process.stdout.write(`\n  !!! skipped: web chat page — no Chromium at ${CHROMIUM} (apt-get install chromium, or set IM_CHROMIUM_BIN; IM_REQUIRE_INFRA=1 makes this a failure)\n\n`);
      this.skip();
    }
    dataDir = tempDir('im-web-');
    // Every listener on an ephemeral loopback port; the start line says where (as `npm start` prints it).
    proc = await ServiceProc.spawn('embedded', 'embedded', {
      IM_DATA_DIR: dataDir, IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0',
      IM_HTTP_ADDR: 'off', IM_GATEWAY_WS_ADDR: '127.0.0.1:0', IM_WEB_ADDR: '127.0.0.1:0',
    });
    const line = String(proc.info.line);
    webUrl = /web chat (http:\/\/\S+)/.exec(line)?.[1] ?? '';
    routerUrl = /route API (http:\/\/\S+)\/v1\/route/.exec(line)?.[1] ?? '';
    assert.match(webUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/, line);
    assert.match(line, / ws:\/\/127\.0\.0\.1:\d+\//, 'the WebSocket listener is on in embedded mode');
    // The CLI signs with the secret the server created in its data dir, as the dev tokens are.
    cliEnv = { IM_DATA_DIR: dataDir, IM_ROUTER_URL: routerUrl };
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // CI runs as root, where Chromium's sandbox cannot start.
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await browser?.close();
    await proc?.stop();
  });

  /** A page in its own browser context (its own storage), signed in as uid. */
  async function openPage(uid: string): Promise<Page> {
    const context = await browser!.createBrowserContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(String(err)));
    pages.push(page);
    await page.goto(webUrl);
    await page.type('#uid', uid);
    await page.click('#signin-form button');
    await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT_MS })
      .catch((err) => { throw new Error(`${uid} did not connect: ${err.message}; errors: ${errors.join('; ')}`); });
    assert.equal(await page.$eval('#me', (e) => e.textContent), uid);
    return page;
  }

  /** An SDK client in Node, with a token signed by the server's key. */
  async function sdk(uid: string): Promise<{ client: ImClient; received: Message[] }> {
    const secret = readSecretFromDataDir(dataDir);
    const client = new ImClient({ routerUrl, token: signToken(secret, uid, 600), transport: 'websocket' });
    clients.push(client);
    const received: Message[] = [];
    client.on('message', (m) => received.push(m));
    await client.connect();
    return { client, received };
  }

  const unreadOf = (page: Page, convId: string) =>
    page.$eval(`li.conv[data-conv-id="${convId}"]`, (e) => Number(e.getAttribute('data-unread'))).catch(() => -1);
  const bodies = (page: Page) => page.$$eval('#message-list .msg .body', (els) => els.map((e) => e.textContent ?? ''));

  async function waitUnread(page: Page, convId: string, count: number): Promise<void> {
    await waitFor(`unread ${count} on ${convId}`, WAIT_MS, async () => (await unreadOf(page, convId)) === count);
  }

  async function waitBody(page: Page, text: string): Promise<void> {
    await waitFor(`"${text}" in the open conversation`, WAIT_MS, async () => (await bodies(page)).includes(text));
  }

  async function openConv(page: Page, convId: string): Promise<void> {
    await page.click(`li.conv[data-conv-id="${convId}"]`);
    await waitFor(`${convId} open`, WAIT_MS, () => page.$eval('#chat-meta', (e) => e.getAttribute('data-conv-id')).then((id) => id === convId));
  }

  async function typeAndSend(page: Page, text: string): Promise<void> {
    await page.type('#text', text);
    await page.click('#send');
  }

  /** The server's read cursor for uid in convId (unread() through the SDK). */
  async function serverUnread(client: ImClient, convId: string) {
    const r = await client.unread([convId]);
    return r.convs.find((u) => u.convId === convId) ?? { convId, count: 0, readSeq: 0, lastSeq: 0 };
  }

  let pageA: Page;
  let pageB: Page;
  const ab = () => (alice < bob ? `p:${alice}:${bob}` : `p:${bob}:${alice}`);

  it('serves the page at the printed URL, and two pages sign in over WebSocket with development tokens', async () => {
    pageA = await openPage(alice);
    pageB = await openPage(bob);
  });

  it('1:1: a message appears live in the other page with an unread count; opening it moves the read cursor', async () => {
    await pageA.type('#new-chat-uid', bob);
    await pageA.click('#new-chat button');
    await typeAndSend(pageA, 'hi bob');
    await waitBody(pageA, 'hi bob');
    await waitUnread(pageB, ab(), 1);
    assert.equal(await pageB.$eval('#total-unread', (e) => e.getAttribute('data-total')), '1');

    const bobSdk = await sdk(bob);
    const before = await serverUnread(bobSdk.client, ab());
    assert.equal(before.count, 1);
    assert.ok(before.readSeq < before.lastSeq, 'unread on the server before bob opens it');

    await openConv(pageB, ab());
    await waitBody(pageB, 'hi bob');
    await waitUnread(pageB, ab(), 0);
    await waitFor("bob's read cursor at his newest message", WAIT_MS, async () => {
      const u = await serverUnread(bobSdk.client, ab());
      return u.count === 0 && u.readSeq === u.lastSeq;
    });
    const meta = await pageB.$eval('#chat-meta', (e) => ({ readSeq: e.getAttribute('data-read-seq'), lastSeq: e.getAttribute('data-last-seq') }));
    assert.equal(meta.readSeq, meta.lastSeq, 'the page shows the cursor at the newest message');

    // The reply reaches alice's open conversation live, and is read there at once.
    await typeAndSend(pageB, 'hi alice');
    await waitBody(pageA, 'hi alice');
    await waitUnread(pageA, ab(), 0);

    // A reload rebuilds the list from the server: nothing unread, the cursor kept.
    await pageB.reload();
    await pageB.waitForSelector('#status[data-state="connected"]', { timeout: WAIT_MS });
    await waitFor('the conversation listed again', WAIT_MS, async () => (await unreadOf(pageB, ab())) === 0);
  });

  it('with a CLI user: `im send` appears live in a page; a page\'s message reaches the CLI user', async () => {
    const ac = alice < carol ? `p:${alice}:${carol}` : `p:${carol}:${alice}`;
    const [sent] = await im(['send', carol, alice, 'from the cli'], cliEnv);
    assert.equal(sent.convId, ac);
    await waitUnread(pageA, ac, 1);
    await openConv(pageA, ac);
    await waitBody(pageA, 'from the cli');
    await waitUnread(pageA, ac, 0);

    const carolSdk = await sdk(carol);
    await typeAndSend(pageA, 'hello cli user');
    await waitFor('carol received the page\'s message', WAIT_MS, () =>
      carolSdk.received.some((m) => m.from === alice && Buffer.from(m.content).toString() === 'hello cli user'));
    const listed = await im(['history', carol, '--with', alice, '--limit', '1'], cliEnv);
    assert.equal(listed[0]?.text, 'hello cli user');
  });

  it('group: created in a page; messages appear live in both pages and reach the CLI user', async () => {
    await pageA.type('#new-group-name', 'team');
    await pageA.type('#new-group-members', `${bob}, ${carol}`);
    await pageA.click('#new-group button');
    await waitFor('the group open in alice\'s page', WAIT_MS, () =>
      pageA.$eval('#chat-meta', (e) => e.getAttribute('data-conv-id') ?? '').then((id) => id.startsWith('g:')));
    const convId = await pageA.$eval('#chat-meta', (e) => e.getAttribute('data-conv-id')!);
    const groupId = convId.slice(2);

    await typeAndSend(pageA, 'hello team');
    await waitUnread(pageB, convId, 1);
    await waitFor('the group named in bob\'s list', WAIT_MS, () =>
      pageB.$eval(`li.conv[data-conv-id="${convId}"] .title`, (e) => e.textContent).then((t) => t === 'team'));
    await openConv(pageB, convId);
    await waitBody(pageB, 'hello team');
    await waitUnread(pageB, convId, 0);
    await typeAndSend(pageB, 'hello from bob');
    await waitBody(pageA, 'hello from bob');

    const carolSdk = await sdk(carol);
    const history = await carolSdk.client.history({ groupId });
    assert.deepEqual(history.messages.map((m) => Buffer.from(m.content).toString()), ['hello from bob', 'hello team']);
    await im(['gsend', carol, groupId, 'cli in the group'], cliEnv);
    await waitBody(pageA, 'cli in the group');
    await waitBody(pageB, 'cli in the group');
  });

  it('history pages older messages on demand; the unread count covers them all', async () => {
    const bc = bob < carol ? `p:${bob}:${carol}` : `p:${carol}:${bob}`;
    const carolSdk = await sdk(carol);
    for (let i = 1; i <= 25; i++) await carolSdk.client.send(bob, `page ${i}`);
    await waitUnread(pageB, bc, 25);
    await openConv(pageB, bc);
    await waitBody(pageB, 'page 25');
    // One page (20) shown, the older ones behind the button.
    assert.deepEqual(await bodies(pageB), Array.from({ length: 20 }, (_, i) => `page ${i + 6}`));
    assert.equal(await pageB.$eval('#older', (e) => e.hasAttribute('hidden')), false);
    await waitUnread(pageB, bc, 0);
    await pageB.click('#older');
    await waitFor('all 25 messages shown', WAIT_MS, async () => (await bodies(pageB)).length === 25);
    assert.deepEqual(await bodies(pageB), Array.from({ length: 25 }, (_, i) => `page ${i + 1}`));
    assert.equal(await pageB.$eval('#older', (e) => e.hasAttribute('hidden')), true, 'no more history');
  });
});
