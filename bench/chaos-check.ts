/**
 * The exactly-once verdict of a fault-injection run (bench/chaos.ts), one row per fault. Pure:
 * it gets what the run recorded — every logical send (acked or not), every user's inbox as sync
 * returned it, every message event the apps saw, every 'disconnected' event — and the fault
 * windows, and attributes each send to the window its first attempt started in.
 *
 * Per send (a sender's client_msg_id):
 * - lost: acknowledged, but its acked msgId is missing from the sender's or a recipient's inbox;
 * - duplicated: more than one inbox entry for it in one inbox (the same msgId twice, or a second
 *   msgId for the same client_msg_id: stored twice), or more than one 'message' event in one app;
 * - app-missed: in a user's inbox (sync shows it) but never emitted by that user's app.
 * Survivor drops: users with a 'disconnected' event inside the window, except those the fault
 * cut off on purpose (the killed gateway's clients).
 */

export interface ChaosSend {
  sender: number;
  /** The sender's message number (its client_msg_id names sender and number). */
  n: number;
  startedAtMs: number;
  /** Set once acknowledged. */
  msgId?: string;
  ackedAtMs?: number;
  /** Why the SDK gave up, when it did. */
  error?: string;
}

/** An inbox entry (from sync) or an app's 'message' event. */
export interface Seen { sender: number; n: number; msgId: string; seq: number }

export interface ChaosRecord {
  sends: readonly ChaosSend[];
  /** Who stores each of `sender`'s messages: the sender itself and its recipients. */
  recipients: (sender: number) => readonly number[];
  inboxes: ReadonlyMap<number, readonly Seen[]>;
  apps: ReadonlyMap<number, readonly Seen[]>;
  disconnects: ReadonlyArray<{ user: number; atMs: number; code: number; reason: string }>;
}

export interface FaultWindow {
  fault: string;
  fromMs: number;
  toMs: number;
  /** Users whose connection the fault itself cut (clients of a killed gateway). */
  exempt: ReadonlySet<number>;
  /** Kill to serving again; undefined = did not recover within the deadline (or no fault). */
  recoveryMs?: number;
}

export type ProblemKind = 'failed' | 'lost' | 'duplicated' | 'app-missed' | 'dropped';

/** One finding with its evidence, for the "why" lines. */
export interface Problem { kind: ProblemKind; detail: string }

export interface FaultRow {
  fault: string;
  acked: number;
  /** Sends the SDK gave up on (not acknowledged within its retry window). */
  failed: number;
  lost: number;
  duplicated: number;
  appMissed: number;
  survivorsDropped: number;
  recoveryMs?: number;
  problems: Problem[];
}

export interface ChaosVerdict {
  rows: FaultRow[];
  /** Inbox entries or app events that match no send of this run or reached a non-recipient. */
  unexpected: number;
  /** A few of them, for the report: `inbox|app of user U: key K (why)`. */
  unexpectedExamples: string[];
}

const key = (sender: number, n: number) => `${sender}:${n}`;

/** msgIds per send key, in the order seen. */
function index(entries: readonly Seen[]): Map<string, Seen[]> {
  const out = new Map<string, Seen[]>();
  for (const e of entries) {
    const k = key(e.sender, e.n);
    const list = out.get(k);
    if (list) list.push(e);
    else out.set(k, [e]);
  }
  return out;
}

function windowOf(windows: readonly FaultWindow[], atMs: number): number {
  for (let i = windows.length - 1; i >= 0; i--) if (atMs >= windows[i].fromMs) return i;
  return 0;
}

export function checkChaos(rec: ChaosRecord, windows: readonly FaultWindow[]): ChaosVerdict {
  if (windows.length === 0) throw new RangeError('checkChaos needs at least one window');
  const rows: FaultRow[] = windows.map((w) => ({
    fault: w.fault, acked: 0, failed: 0, lost: 0, duplicated: 0, appMissed: 0, survivorsDropped: 0, recoveryMs: w.recoveryMs, problems: [],
  }));
  const inboxes = new Map([...rec.inboxes].map(([u, list]) => [u, index(list)]));
  const apps = new Map([...rec.apps].map(([u, list]) => [u, index(list)]));
  const known = new Set<string>();

  for (const s of rec.sends) {
    const k = key(s.sender, s.n);
    known.add(k);
    const w = windowOf(windows, s.startedAtMs);
    const row = rows[w];
    const what = `send ${k} (started ${s.startedAtMs - windows[w].fromMs} ms into the window`;
    if (s.msgId !== undefined) row.acked++;
    else {
      row.failed++;
      row.problems.push({ kind: 'failed', detail: `${what}): ${s.error ?? 'no outcome'}` });
    }
    const tookMs = s.ackedAtMs !== undefined ? `, acked after ${s.ackedAtMs - s.startedAtMs} ms` : ', never acked';
    let lost = '';
    let dup = '';
    let missed = '';
    for (const u of rec.recipients(s.sender)) {
      const stored = inboxes.get(u)?.get(k) ?? [];
      const shown = apps.get(u)?.get(k) ?? [];
      if (s.msgId !== undefined && !stored.some((e) => e.msgId === s.msgId)) lost ||= `user ${u}'s inbox lacks acked ${s.msgId}`;
      if (stored.length > 1) dup ||= `user ${u}'s inbox holds it ${stored.length}× (msgIds ${stored.map((e) => `${e.msgId}@seq ${e.seq}`).join(', ')})`;
      else if (shown.length > 1) dup ||= `user ${u}'s app got it ${shown.length}× (seqs ${shown.map((e) => e.seq).join(', ')})`;
      if (stored.length > 0 && shown.length === 0) missed ||= `user ${u}'s app never emitted seq ${stored[0].seq}`;
    }
    if (lost) { row.lost++; row.problems.push({ kind: 'lost', detail: `${what}${tookMs}): ${lost}` }); }
    if (dup) { row.duplicated++; row.problems.push({ kind: 'duplicated', detail: `${what}${tookMs}): ${dup}` }); }
    if (missed) { row.appMissed++; row.problems.push({ kind: 'app-missed', detail: `${what}${tookMs}): ${missed}` }); }
  }

  let unexpected = 0;
  const unexpectedExamples: string[] = [];
  for (const [name, book] of [['inbox', inboxes], ['app', apps]] as const) {
    for (const [u, byKey] of book) {
      for (const [k, list] of byKey) {
        const sender = Number(k.split(':')[0]);
        const why = !known.has(k) ? 'no such send' : !rec.recipients(sender).includes(u) ? 'not a recipient' : '';
        if (!why) continue;
        unexpected += list.length;
        if (unexpectedExamples.length < 3) unexpectedExamples.push(`${name} of user ${u}: send ${k} × ${list.length} (${why})`);
      }
    }
  }

  windows.forEach((w, i) => {
    const dropped = new Map<number, string>();
    for (const d of rec.disconnects) {
      if (d.atMs < w.fromMs || d.atMs >= w.toMs || w.exempt.has(d.user) || dropped.has(d.user)) continue;
      dropped.set(d.user, `user ${d.user}: ${d.code} ${d.reason}`);
    }
    rows[i].survivorsDropped = dropped.size;
    for (const detail of dropped.values()) rows[i].problems.push({ kind: 'dropped', detail });
  });
  return { rows, unexpected, unexpectedExamples };
}
