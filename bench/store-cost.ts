/**
 * `npm run bench -- store-cost`: what the store alone costs per message, in this process, with
 * no network in between — the floor under the send path. Appends `--messages` messages with
 * `--recipients` inbox writes each (2 = a 1:1 message: sender and peer; 100 = a full group),
 * `--batch` in flight at a time, and reports CPU-µs per message and per recipient: this process's
 * CPU, plus the Cassandra server's when it runs on this box.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { newId } from '../common/ids';
import { openStore } from '../storage/open';
import { parseFlags, UsageError } from './options';
import { pidListeningOn, round2, sampleProc } from './proc-stats';

export interface StoreCostResult {
  store: string;
  recipients: number;
  messages: number;
  cpuUsPerMessage: number;
  cpuUsPerRecipient: number;
  wallUsPerMessage: number;
  /** Cassandra's own CPU, when its server runs on this machine. */
  serverCpuUsPerMessage?: number;
}

export async function storeCost(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<StoreCostResult> {
  const { flags, positionals } = parseFlags(argv, new Set(['store', 'recipients', 'messages', 'batch', 'keyspace']));
  if (positionals.length) throw new UsageError(`store-cost takes no positional arguments, got "${positionals[0]}"`);
  const kind = flags.get('store') ?? 'sqlite';
  if (kind !== 'sqlite' && kind !== 'cassandra') throw new UsageError('--store must be sqlite or cassandra');
  const num = (name: string, def: number, max: number) => {
    const v = Number(flags.get(name) ?? def);
    if (!Number.isInteger(v) || v < 1 || v > max) throw new UsageError(`--${name} must be an integer in 1..${max}`);
    return v;
  };
  const recipients = num('recipients', 2, 100);
  const messages = num('messages', 20_000, 10_000_000);
  const batch = num('batch', 100, 10_000);
  const users = 1000;

  let dir: string | undefined;
  let serverPid: number | undefined;
  let store;
  if (kind === 'sqlite') {
    dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'im-bench-store-'));
    store = await openStore({ kind: 'sqlite', dataDir: dir });
  } else {
    const contact = env.IM_CASSANDRA_CONTACT_POINTS ?? '127.0.0.1:9042';
    store = await openStore({
      kind: 'cassandra', contactPoints: contact.split(','), localDataCenter: env.IM_CASSANDRA_DC ?? 'datacenter1',
      keyspace: flags.get('keyspace') ?? 'im_bench', consistency: 'ONE', replication: 1,
    });
    serverPid = pidListeningOn(Number(contact.split(',')[0].split(':')[1] ?? 9042));
  }
  const run = `s${newId().slice(-8)}`;
  try {
    const server0 = serverPid ? sampleProc(serverPid) : undefined;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < messages;) {
      const inflight: Promise<unknown>[] = [];
      for (let j = 0; j < batch && k < messages; j++, k++) {
        const from = `${run}u${k % users}`;
        const rcpt = recipients === 1 ? [from] : [from, ...Array.from({ length: recipients - 1 }, (_, i) => `${run}u${(k + 1 + i) % users}`)];
        inflight.push(store.appendMessage({
          msgId: newId(), convId: `g:${run}-${k % 500}`, from, to: '', groupId: `${run}-${k % 500}`, clientMsgId: `c${k}`,
          contentType: 'text/plain', content: Buffer.alloc(100, 0x61), sentAtMs: Date.now(), recipients: [...new Set(rcpt)],
          dedupWindowMs: 86_400_000,
        }));
      }
      await Promise.all(inflight);
    }
    const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const server1 = serverPid ? sampleProc(serverPid) : undefined;
    const cpuUs = (cpu.user + cpu.system) / messages;
    return {
      store: kind, recipients, messages,
      cpuUsPerMessage: round2(cpuUs), cpuUsPerRecipient: round2(cpuUs / recipients), wallUsPerMessage: round2(wallUs / messages),
      serverCpuUsPerMessage: server0 && server1 ? round2(((server1.cpuS - server0.cpuS) * 1e6) / messages) : undefined,
    };
  } finally {
    await store.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}
