/**
 * Structured JSON-lines logging to stderr. A Logger is passed in, never imported as a global.
 * A line written while a span is active carries its trace_id and span_id, so logs and traces join.
 */
import { context, trace } from '@opentelemetry/api';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error', 'silent'];
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(level: Level = 'info', base: Record<string, unknown> = {},
  write: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const min = ORDER[level];
  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    const rec: Record<string, unknown> = { t: new Date().toISOString(), level: lvl, msg, ...base, ...fields };
    // With tracing off this is the API's no-op context: no span, nothing added.
    const sc = trace.getSpan(context.active())?.spanContext();
    if (sc && trace.isSpanContextValid(sc)) {
      rec.trace_id = sc.traceId;
      rec.span_id = sc.spanId;
    }
    for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = v.message;
    write(JSON.stringify(rec));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger(level, { ...base, ...f }, write),
  };
}

export const silentLogger: Logger = createLogger('silent');
