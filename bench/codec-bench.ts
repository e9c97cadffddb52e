/**
 * `npm run bench -- codec [--rounds 9] [--round-ms 100]`: CPU cost of the protocol codec on the
 * hot path, in ns per operation, best of N rounds (the best round is the one least disturbed by
 * other load, so the figure barely depends on how busy the machine is). Uses only the façade
 * names every version of proto/ has, so the same file measures before and after a codec change.
 */
import { decodeDeliveryBatch, encodeDeliveryBatch } from '../proto/delivery';
import { decode, decodeFrame, encode, frameBytes, Op } from '../proto/wire';
import { UsageError } from './options';

export interface CodecCase { name: string; nsPerOp: number }

const CONTENT = Buffer.alloc(100, 0x61);
const MESSAGE = {
  msgId: '01JQ7Z0XG5M8V3K2D9T4B6N1PC', seq: 1_234_567, convId: 'p:user000123:user000124', from: 'user000123',
  to: 'user000124', groupId: '', clientMsgId: '100017', sentAtMs: 1_767_225_600_123, contentType: 'text/plain',
  content: CONTENT, convSeq: 5_000,
};
const SEND_REQ = { to: 'user000124', clientMsgId: '100017', contentType: 'text/plain', content: CONTENT };
const SEND_RESP = { msgId: MESSAGE.msgId, seq: 1_234_566, sentAtMs: MESSAGE.sentAtMs, convId: MESSAGE.convId, convSeq: 5_000 };
/** A 100-member group message as one gateway node's batch: 100 deliveries of one body. */
const GROUP_BATCH_SIZE = 100;

/** The cases: what logic, the gateway and a client each do per message. */
function cases(): Array<{ name: string; run: () => unknown }> {
  const body = encode('Message', MESSAGE);
  const pushFrame = frameBytes({ op: Op.PUSH, body }).subarray(4);
  const sendFrame = frameBytes({ op: Op.SEND, requestId: 7, body: encode('SendReq', SEND_REQ) }).subarray(4);
  const deliveries = Array.from({ length: GROUP_BATCH_SIZE }, (_, i) => ({ uid: `user${i}`, seq: 1_000_000 + i, message: body, sentAtMs: MESSAGE.sentAtMs }));
  const batch = encodeDeliveryBatch({ deliveries, kicks: [] });
  return [
    // logic: a SEND arrives, its reply and the stored message go out
    { name: 'SendReq frame decode (gateway+logic)', run: () => decode('SendReq', decodeFrame(sendFrame).body) },
    { name: 'SendResp encode', run: () => encode('SendResp', SEND_RESP) },
    { name: 'Message encode (logic, once per send)', run: () => encode('Message', MESSAGE) },
    // gateway: one push frame per recipient connection
    { name: 'push frame encode (gateway, per recipient)', run: () => frameBytes({ op: Op.PUSH, body }) },
    // client/SDK/bench: a push arrives
    { name: 'push frame + Message decode (client)', run: () => decode('Message', decodeFrame(pushFrame).body) },
    // the bus: per 100-recipient batch (divide by 100 for per delivery)
    { name: `DeliveryBatch encode, ${GROUP_BATCH_SIZE} deliveries`, run: () => encodeDeliveryBatch({ deliveries, kicks: [] }) },
    { name: `DeliveryBatch decode, ${GROUP_BATCH_SIZE} deliveries`, run: () => decodeDeliveryBatch(batch) },
  ];
}

/** ns per call of `run`: iterations calibrated to about `roundMs`, best of `rounds`. */
function measure(run: () => unknown, rounds: number, roundMs: number): number {
  let iterations = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) run();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms >= roundMs / 4) { iterations = Math.max(1, Math.round((iterations * roundMs) / ms)); break; }
    iterations *= 4;
  }
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) run();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iterations);
  }
  return best;
}

function numberArg(argv: readonly string[], name: string, fallback: number): number {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be a positive integer, got ${argv[i + 1]}`);
  return v;
}

export function codecBench(argv: readonly string[]): CodecCase[] {
  const rounds = numberArg(argv, '--rounds', 9);
  const roundMs = numberArg(argv, '--round-ms', 100);
  return cases().map((c) => ({ name: c.name, nsPerOp: Math.round(measure(c.run, rounds, roundMs)) }));
}

export function renderCodecBench(results: CodecCase[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  return results.map((r) => `${r.name.padEnd(width)}  ${String(r.nsPerOp).padStart(8)} ns/op`).join('\n');
}
