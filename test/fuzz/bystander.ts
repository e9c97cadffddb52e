/**
 * Two SDK clients that chat while the fuzzer runs. Afterwards every acknowledged send must have
 * been delivered to its recipient exactly once and in order, and the recipient's sync must hold
 * it once at the same place: fuzzing other connections never costs a real user a message.
 */
import { ImClient } from '../../client/sdk';
import { signToken } from '../../common/jwt';
import { syncAll } from '../../client/client.test-support';
import type { Message } from '../../proto/wire';
import { eventually } from '../wait';

export interface BystanderResult {
  /** Sends acknowledged, both directions. */
  acked: number;
  /** Sends that failed (the SDK gave up); they are not required to arrive. */
  failed: number;
  /** Empty when nothing was lost, duplicated or reordered. */
  problems: string[];
}

interface Side {
  uid: string;
  client: ImClient;
  got: Message[];
  /** msgIds the other side had acknowledged, in send order. */
  expected: string[];
}

export class Bystanders {
  private readonly sides: Side[];
  private running = true;
  private loop: Promise<void> | undefined;
  private failed = 0;
  private stopped: Promise<BystanderResult> | undefined;

  constructor(routerUrl: string, secret: string, ns: string) {
    this.sides = ['alice', 'bob'].map((name) => {
      const uid = `bystander-${name}-${ns}`;
      const client = new ImClient({ routerUrl, token: signToken(secret, uid, 3600), deviceId: 'app' });
      const side: Side = { uid, client, got: [], expected: [] };
      client.on('message', (m: Message) => { if (m.from !== uid) side.got.push(m); });
      return side;
    });
  }

  async start(): Promise<void> {
    for (const s of this.sides) await s.client.connect();
    this.loop = this.chat();
  }

  /** Sends alternate directions, one at a time, until stop(). */
  private async chat(): Promise<void> {
    for (let i = 0; this.running; i++) {
      const [from, to] = i % 2 === 0 ? this.sides : [this.sides[1], this.sides[0]];
      try {
        const r = await from.client.send(to.uid, `chat ${i}`);
        if (!r.duplicate) to.expected.push(r.msgId);
      } catch {
        this.failed++;
      }
    }
  }

  /** Stops chatting, waits (bounded) for every acknowledged message, checks delivery and sync. Idempotent. */
  stop(timeoutMs = 30_000): Promise<BystanderResult> {
    return (this.stopped ??= this.finish(timeoutMs));
  }

  private async finish(timeoutMs: number): Promise<BystanderResult> {
    this.running = false;
    await this.loop;
    const problems: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (const s of this.sides) {
      await waitUntil(() => s.got.length >= s.expected.length, deadline);
      const delivered = s.got.map((m) => m.msgId);
      if (delivered.join() !== s.expected.join()) {
        problems.push(`${s.uid}: delivered ${delivered.length} of ${s.expected.length} acknowledged, first difference at #${firstDiff(delivered, s.expected)}`);
      }
      const synced = (await syncAll(s.client)).filter((m) => m.from !== s.uid).map((m) => m.msgId);
      if (synced.join() !== s.expected.join()) {
        problems.push(`${s.uid}: sync holds ${synced.length} of ${s.expected.length} acknowledged, first difference at #${firstDiff(synced, s.expected)}`);
      }
    }
    await Promise.all(this.sides.map((s) => s.client.close()));
    return { acked: this.sides.reduce((n, s) => n + s.expected.length, 0), failed: this.failed, problems };
  }
}


function firstDiff(a: string[], b: string[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Polls a condition until it holds or the deadline passes (then the check reports what is missing). */
async function waitUntil(cond: () => boolean, deadlineMs: number): Promise<void> {
  await eventually(cond, 'the condition', Math.max(0, deadlineMs - Date.now())).catch(() => undefined);
}
