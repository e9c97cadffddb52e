/**
 * The web chat page (served by embedded mode, embedded/web.ts): signs in with a development token,
 * then is an ordinary SDK client over WebSocket. The conversation list is built from the inbox
 * (the SDK syncs it from seq 0 at sign-in, then delivers pushes live), the unread counts and read
 * cursors come from the server (unread, read), and an open conversation pages its history.
 */
import { ImClient } from '../client/sdk';
import { isValidUid, peerConvId } from '../common/ids';
import type { Message, Unread } from '../proto/wire';

/** Messages per history page. */
const PAGE = 20;
/** Unread refreshes after pushes are batched over this long (one request for a burst). */
const UNREAD_BATCH_MS = 100;

interface Conv {
  id: string;
  /** The peer of a 1:1 conversation, or the group id. */
  peer?: string;
  groupId?: string;
  title: string;
  lastText: string;
  lastAtMs: number;
  /** Server counts (Unread): incoming messages after the read cursor. */
  unread: number;
  readSeq: number;
  /** The newest inbox seq of this conversation. */
  lastSeq: number;
}

interface OpenChat {
  conv: Conv;
  /** Ascending conv_seq. */
  messages: Message[];
  ids: Set<string>;
  hasMore: boolean;
  loadingOlder: boolean;
  /** Unread when opened: that many newest incoming messages get a "new" divider. */
  newOnOpen: number;
  /** The first of them, once the first page is in: the divider goes before it. */
  dividerBefore?: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const decoder = new TextDecoder();

let me = '';
let client: ImClient | undefined;
let synced = false;
const convs = new Map<string, Conv>();
let open: OpenChat | undefined;
const groupNames = new Map<string, Promise<string>>();
const unreadDirty = new Set<string>();
let unreadTimer: number | undefined;
let pendingRead: { convId: string; seq: number } | undefined;
let reading = false;

function text(m: Message): string {
  return m.contentType.startsWith('text/') ? decoder.decode(m.content) : `[${m.contentType}, ${m.content.length} bytes]`;
}

function showError(where: 'signin-error' | 'chat-error', err: unknown): void {
  $(where).textContent = err instanceof Error ? err.message : String(err);
}

// --- sign in ---

interface PageConfig { routerUrl: string; devTokens: boolean }

async function pageConfig(): Promise<PageConfig> {
  const res = await fetch('/config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`/config.json: HTTP ${res.status}`);
  return res.json() as Promise<PageConfig>;
}

async function devToken(uid: string): Promise<string> {
  const res = await fetch('/v1/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ uid }) });
  const body = await res.json() as { token?: string; error?: { message: string } };
  if (!res.ok || !body.token) throw new Error(body.error?.message ?? `token: HTTP ${res.status}`);
  return body.token;
}

async function signIn(config: PageConfig, uid: string, pastedToken: string): Promise<void> {
  if (!isValidUid(uid)) throw new Error('a user id is 1-64 letters, digits and _ . @ -');
  const token = config.devTokens ? () => devToken(uid) : pastedToken;
  if (!config.devTokens && !pastedToken) throw new Error('paste a token (im token <uid>): this server gives no sign-in tokens');
  if (config.devTokens) await devToken(uid); // a clear error here rather than a reconnect loop
  me = uid;
  const c = new ImClient({ routerUrl: config.routerUrl, token, transport: 'websocket', deviceId: `web-${crypto.randomUUID().slice(0, 8)}` });
  client = c;
  c.on('message', onMessage);
  c.on('synced', () => {
    synced = true;
    void refreshUnread();
  });
  c.on('connected', () => setStatus('connected', 'online'));
  c.on('reconnecting', (e) => setStatus('reconnecting', `reconnecting (${e.attempt})`));
  c.on('disconnected', (e) => setStatus('disconnected', e.reconnect ? 'reconnecting' : `offline: ${e.reason}`));
  c.on('error', (err) => showError('chat-error', err));
  setStatus('connecting', 'connecting');
  try {
    await c.connect();
  } catch (err) {
    client = undefined;
    await c.close();
    throw err;
  }
  $('me').textContent = uid;
  $('signin').hidden = true;
  $('app').hidden = false;
  document.title = `${uid} · IM web chat`;
  sessionStorage.setItem('im-uid', uid);
}

function setStatus(state: string, label: string): void {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = label;
}

// --- conversations ---

function convFor(m: Message): Conv {
  let conv = convs.get(m.convId);
  if (!conv) {
    conv = m.groupId
      ? { id: m.convId, groupId: m.groupId, title: `group ${m.groupId}`, lastText: '', lastAtMs: 0, unread: 0, readSeq: 0, lastSeq: 0 }
      : { id: m.convId, peer: m.from === me ? m.to : m.from, title: m.from === me ? m.to : m.from, lastText: '', lastAtMs: 0, unread: 0, readSeq: 0, lastSeq: 0 };
    convs.set(conv.id, conv);
    if (conv.groupId) nameGroup(conv);
  }
  return conv;
}

function nameGroup(conv: Conv): void {
  const id = conv.groupId!;
  let name = groupNames.get(id);
  if (!name) {
    name = client!.groupMembers(id).then((r) => r.group?.name || `group ${id}`, () => `group ${id}`);
    groupNames.set(id, name);
  }
  void name.then((n) => {
    conv.title = n;
    renderConvs();
    if (open?.conv === conv) renderHead();
  });
}

function onMessage(m: Message): void {
  const conv = convFor(m);
  conv.lastText = `${m.from === me ? 'you' : m.from}: ${text(m)}`;
  conv.lastAtMs = m.sentAtMs;
  conv.lastSeq = Math.max(conv.lastSeq, m.seq);
  if (open?.conv === conv) {
    appendMessage(m);
    if (m.from !== me) markRead(conv.id, m.seq);
  } else if (m.from !== me && synced) {
    unreadDirty.add(conv.id);
    unreadTimer ??= window.setTimeout(() => {
      unreadTimer = undefined;
      void refreshUnread([...unreadDirty.values()]);
      unreadDirty.clear();
    }, UNREAD_BATCH_MS);
  }
  renderConvs();
}

function applyUnread(u: Unread): void {
  const conv = convs.get(u.convId);
  if (!conv) return;
  // A cursor never moves back: an answer behind one already seen is stale (it crossed a read).
  if (u.readSeq < conv.readSeq) return;
  conv.unread = u.count;
  conv.readSeq = u.readSeq;
  conv.lastSeq = Math.max(conv.lastSeq, u.lastSeq);
}

/** Counts from the server: all conversations (after a sync), or the given ones. */
async function refreshUnread(convIds: string[] = []): Promise<void> {
  if (!client) return;
  try {
    const r = await client.unread(convIds);
    if (convIds.length === 0) for (const c of convs.values()) c.unread = 0; // absent: nothing unread
    for (const u of r.convs) applyUnread(u);
    renderConvs();
    if (open) {
      // Opened before the counts came in (or they moved since): read up to the newest.
      if (open.conv.lastSeq > open.conv.readSeq) markRead(open.conv.id, open.conv.lastSeq);
      renderHead();
    }
  } catch (err) {
    showError('chat-error', err);
  }
}

/** Moves the read cursor (never back); one request at a time, the newest seq wins. */
function markRead(convId: string, seq: number): void {
  if (!client || seq <= 0) return;
  if (!pendingRead || pendingRead.convId !== convId || pendingRead.seq < seq) pendingRead = { convId, seq };
  if (reading) return;
  reading = true;
  void (async () => {
    while (pendingRead && client) {
      const { convId: id, seq: s } = pendingRead;
      pendingRead = undefined;
      try {
        const r = await client.markRead(id, s);
        if (r.unread) applyUnread(r.unread);
      } catch (err) {
        showError('chat-error', err);
      }
    }
    reading = false;
    renderConvs();
    renderHead();
  })();
}

function renderConvs(): void {
  const list = $('convs');
  const sorted = [...convs.values()].sort((a, b) => b.lastAtMs - a.lastAtMs || a.id.localeCompare(b.id));
  list.replaceChildren(...sorted.map((c) => {
    const li = document.createElement('li');
    li.className = `conv${open?.conv === c ? ' open' : ''}`;
    li.dataset.convId = c.id;
    li.dataset.unread = String(c.unread);
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = c.title;
    const preview = document.createElement('span');
    preview.className = 'preview';
    preview.textContent = c.lastText || 'no messages yet';
    li.append(title, preview);
    if (c.unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = String(c.unread);
      li.append(badge);
    }
    li.addEventListener('click', () => void openConv(c));
    return li;
  }));
  const total = sorted.reduce((n, c) => n + c.unread, 0);
  const badge = $('total-unread');
  badge.hidden = total === 0;
  badge.textContent = String(total);
  badge.dataset.total = String(total);
}

// --- an open conversation ---

async function openConv(conv: Conv): Promise<void> {
  if (!client) return;
  $('chat-error').textContent = '';
  const chat: OpenChat = { conv, messages: [], ids: new Set(), hasMore: false, loadingOlder: false, newOnOpen: conv.unread };
  open = chat;
  $('message-list').replaceChildren();
  renderHead();
  renderConvs();
  ($('text') as HTMLInputElement).disabled = false;
  ($('send') as HTMLButtonElement).disabled = false;
  try {
    const page = await client.history({ ...(conv.groupId ? { groupId: conv.groupId } : { with: conv.peer }), limit: PAGE });
    if (open !== chat) return;
    chat.hasMore = page.hasMore;
    // Pushes that arrived while the page was loading are already shown: keep them after it.
    const live = chat.messages;
    chat.messages = [];
    chat.ids.clear();
    for (const m of [...page.messages].reverse()) addMessage(chat, m);
    let n = chat.newOnOpen;
    for (let i = chat.messages.length - 1; i >= 0 && n > 0; i--) {
      if (chat.messages[i].from !== me && --n === 0) chat.dividerBefore = chat.messages[i].msgId;
    }
    for (const m of live) addMessage(chat, m);
    renderMessages(true);
    if (conv.lastSeq > 0) markRead(conv.id, conv.lastSeq);
  } catch (err) {
    showError('chat-error', err);
  }
  ($('text') as HTMLInputElement).focus();
}

function addMessage(chat: OpenChat, m: Message): boolean {
  if (chat.ids.has(m.msgId)) return false;
  chat.ids.add(m.msgId);
  chat.messages.push(m);
  chat.messages.sort((a, b) => a.convSeq - b.convSeq);
  return true;
}

function appendMessage(m: Message): void {
  if (!open || !addMessage(open, m)) return;
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  renderMessages(atBottom || m.from === me);
}

async function loadOlder(): Promise<void> {
  const chat = open;
  if (!client || !chat || chat.loadingOlder || !chat.hasMore || chat.messages.length === 0) return;
  chat.loadingOlder = true;
  try {
    const conv = chat.conv;
    const page = await client.history({
      ...(conv.groupId ? { groupId: conv.groupId } : { with: conv.peer }), beforeConvSeq: chat.messages[0].convSeq, limit: PAGE,
    });
    if (open !== chat) return;
    chat.hasMore = page.hasMore;
    const box = $('messages');
    const fromBottom = box.scrollHeight - box.scrollTop;
    for (const m of page.messages) addMessage(chat, m);
    renderMessages(false);
    box.scrollTop = box.scrollHeight - fromBottom; // keep the view where it was
  } catch (err) {
    showError('chat-error', err);
  } finally {
    chat.loadingOlder = false;
  }
}

function renderHead(): void {
  const title = $('chat-title');
  const meta = $('chat-meta');
  if (!open) {
    title.textContent = 'No conversation open';
    meta.textContent = '';
    return;
  }
  const c = open.conv;
  title.textContent = c.groupId ? `${c.title}` : c.title;
  meta.dataset.convId = c.id;
  meta.dataset.readSeq = String(c.readSeq);
  meta.dataset.lastSeq = String(c.lastSeq);
  meta.textContent = `${c.groupId ? 'group' : '1:1'} · read up to #${c.readSeq} of #${c.lastSeq}`;
}

function renderMessages(scrollToEnd: boolean): void {
  if (!open) return;
  const chat = open;
  $('older').hidden = !chat.hasMore;
  const items: HTMLElement[] = [];
  chat.messages.forEach((m) => {
    if (m.msgId === chat.dividerBefore) {
      const d = document.createElement('li');
      d.className = 'divider';
      d.textContent = 'new messages';
      items.push(d);
    }
    const li = document.createElement('li');
    li.className = `msg${m.from === me ? ' mine' : ''}`;
    li.dataset.convSeq = String(m.convSeq);
    li.dataset.msgId = m.msgId;
    const head = document.createElement('div');
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = m.from === me ? 'you' : m.from;
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = new Date(m.sentAtMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    head.append(from, time);
    const body = document.createElement('div');
    body.className = 'body';
    body.textContent = text(m);
    li.append(head, body);
    items.push(li);
  });
  $('message-list').replaceChildren(...items);
  if (scrollToEnd) {
    const box = $('messages');
    box.scrollTop = box.scrollHeight;
  }
}

async function send(textValue: string): Promise<void> {
  if (!client || !open || textValue.trim() === '') return;
  const c = open.conv;
  // The SDK emits the sent message through 'message' (in inbox order) before send() resolves.
  if (c.groupId) await client.sendGroup(c.groupId, textValue);
  else await client.send(c.peer!, textValue);
}

function openPeer(uid: string): void {
  if (!isValidUid(uid)) throw new Error('a user id is 1-64 letters, digits and _ . @ -');
  const id = peerConvId(me, uid);
  let conv = convs.get(id);
  if (!conv) {
    conv = { id, peer: uid, title: uid, lastText: '', lastAtMs: Date.now(), unread: 0, readSeq: 0, lastSeq: 0 };
    convs.set(id, conv);
  }
  void openConv(conv);
}

async function createGroup(name: string, members: string[]): Promise<void> {
  const r = await client!.createGroup(name, members);
  const g = r.group!;
  const id = `g:${g.groupId}`;
  let conv = convs.get(id);
  if (!conv) {
    conv = { id, groupId: g.groupId, title: g.name, lastText: `created with ${g.members.join(', ')}`, lastAtMs: Date.now(), unread: 0, readSeq: 0, lastSeq: 0 };
    convs.set(id, conv);
  }
  groupNames.set(g.groupId, Promise.resolve(g.name));
  await openConv(conv);
}

// --- wiring ---

function wire(config: PageConfig): void {
  $('token-label').hidden = config.devTokens;
  const signinForm = $('signin-form') as HTMLFormElement;
  signinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    $('signin-error').textContent = '';
    const button = signinForm.querySelector('button')!;
    button.disabled = true;
    signIn(config, ($('uid') as HTMLInputElement).value.trim(), ($('token') as HTMLTextAreaElement).value.trim())
      .catch((err) => showError('signin-error', err))
      .finally(() => { button.disabled = false; });
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem('im-uid');
    void client?.close().then(() => location.reload());
  });
  $('new-chat').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('new-chat-uid') as HTMLInputElement;
    try {
      openPeer(input.value.trim());
      input.value = '';
    } catch (err) {
      showError('chat-error', err);
    }
  });
  $('new-group').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('new-group-name') as HTMLInputElement;
    const members = $('new-group-members') as HTMLInputElement;
    createGroup(name.value.trim(), members.value.split(',').map((s) => s.trim()).filter(Boolean))
      .then(() => { name.value = ''; members.value = ''; }, (err) => showError('chat-error', err));
  });
  $('compose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('text') as HTMLInputElement;
    const value = input.value;
    input.value = '';
    send(value).catch((err) => {
      input.value = value;
      showError('chat-error', err);
    });
  });
  $('older').addEventListener('click', () => void loadOlder());
}

async function main(): Promise<void> {
  const config = await pageConfig();
  wire(config);
  const uid = new URLSearchParams(location.search).get('uid') ?? sessionStorage.getItem('im-uid');
  if (uid && config.devTokens) {
    ($('uid') as HTMLInputElement).value = uid;
    await signIn(config, uid, '').catch((err) => showError('signin-error', err));
  }
}

main().catch((err) => showError('signin-error', err));
