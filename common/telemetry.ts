/**
 * Tracing for a process: OpenTelemetry's Node SDK (traces only: metrics are Prometheus text on
 * the admin port, logs are JSON lines on stderr), configured by the standard OTEL_* variables
 * (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME...).
 *
 * On by default in a service process, off by default in embedded mode (a trial on a laptop has
 * no collector); OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turns it off anywhere. Off
 * means nothing of the SDK is even loaded: @opentelemetry/api answers with its no-op tracer and
 * the span helpers (telemetry-spans.ts) return before building anything.
 *
 * The SDK is process-global by OpenTelemetry's design (one registered tracer provider, context
 * manager and propagator), so this module keeps the one flag that mirrors it.
 */
import { context, diag, DiagLogLevel, propagation, trace, type DiagLogger } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Env } from './config';
import { silentLogger, type Logger } from './log';

export interface TelemetryConfig {
  /** Whether traces are recorded and exported. */
  enabled: boolean;
  /** Resource service.name: OTEL_SERVICE_NAME, else `im-<svc>`. */
  serviceName: string;
  /** Why it is on or off, for the startup log line. */
  reason: string;
}

export interface TelemetryConfigOptions {
  /** Embedded mode: off unless OTEL_TRACES_EXPORTER is set or OTEL_SDK_DISABLED=false. */
  embedded?: boolean;
}

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;

/** A pure function of env: whether tracing is on and under which service name. */
export function loadTelemetryConfig(svc: string, env: Env = process.env, options: TelemetryConfigOptions = {}): TelemetryConfig {
  const serviceName = env.OTEL_SERVICE_NAME?.trim() || `im-${svc}`;
  const off = (reason: string): TelemetryConfig => ({ enabled: false, serviceName, reason });
  const disabled = env.OTEL_SDK_DISABLED?.trim() ?? '';
  if (TRUE.test(disabled)) return off('OTEL_SDK_DISABLED=true');
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (exporters.includes('none')) return off('OTEL_TRACES_EXPORTER=none');
  if (options.embedded && exporters.length === 0 && !FALSE.test(disabled)) {
    return off('embedded mode (set OTEL_TRACES_EXPORTER to trace)');
  }
  return { enabled: true, serviceName, reason: `exporter ${exporters.join(',') || 'otlp (default)'}` };
}

let instrumentations: Instrumentation[] | undefined;

/**
 * Patches @grpc/grpc-js and cassandra-driver for tracing. They are patched when they are first
 * required, so this runs before either is loaded: service-main.ts calls it as it is imported,
 * and every main.ts imports service-main before anything that uses gRPC or Cassandra.
 * Idempotent; a no-op when tracing is off.
 */
export function installInstrumentations(env: Env = process.env, options: TelemetryConfigOptions = {}): void {
  if (loadTelemetryConfig('any', env, options).enabled) ensureInstrumentations();
}

function ensureInstrumentations(): Instrumentation[] {
  if (instrumentations) return instrumentations;
  const loaded = ['@grpc/grpc-js', 'cassandra-driver'].filter((m) => isLoaded(m));
  if (loaded.length > 0) {
    process.stderr.write(`im: tracing: ${loaded.join(', ')} loaded before instrumentation; those spans will be missing\n`);
  }
  const { GrpcInstrumentation } = require('@opentelemetry/instrumentation-grpc') as typeof import('@opentelemetry/instrumentation-grpc');
  const { CassandraDriverInstrumentation } =
    require('@opentelemetry/instrumentation-cassandra-driver') as typeof import('@opentelemetry/instrumentation-cassandra-driver');
  instrumentations = [
    // Connect is the gateway's hours-long stream (per-call spans ride Call.trace_parent instead);
    // Heartbeat is a timer every few seconds: as spans both would be noise.
    new GrpcInstrumentation({ ignoreGrpcMethods: ['Connect', 'Heartbeat'] }),
    new CassandraDriverInstrumentation(),
  ];
  return instrumentations;
}

function isLoaded(moduleName: string): boolean {
  try {
    return require.cache[require.resolve(moduleName)] !== undefined;
  } catch {
    return false;
  }
}

export interface TelemetryOptions {
  logger?: Logger;
  /**
   * Span processors to use instead of the exporter OTEL_TRACES_EXPORTER names (tests pass a
   * SimpleSpanProcessor over an InMemorySpanExporter).
   */
  spanProcessors?: SpanProcessor[];
  /**
   * Patch gRPC and cassandra-driver (default true). Tests that load them long before turn this
   * off; the message's own spans (telemetry-spans.ts) do not depend on it.
   */
  instrumentations?: boolean;
  /** Bound on flushing spans at shutdown. Default 2000. */
  shutdownTimeoutMs?: number;
}

export interface Telemetry {
  readonly enabled: boolean;
  /** Flushes and unregisters the SDK within shutdownTimeoutMs. Idempotent. */
  shutdown(): Promise<void>;
}

let active = false;

/** Whether a tracer provider is registered: the span helpers do nothing at all otherwise. */
export function tracingActive(): boolean {
  return active;
}

const DISABLED: Telemetry = { enabled: false, shutdown: async () => undefined };

/** Starts the SDK when config.enabled; one at a time per process. */
export function startTelemetry(config: TelemetryConfig, options: TelemetryOptions = {}): Telemetry {
  const logger = options.logger ?? silentLogger;
  if (!config.enabled) {
    logger.debug('tracing off', { reason: config.reason });
    return DISABLED;
  }
  if (active) throw new Error('telemetry already started in this process');
  if (!process.env.OTEL_LOG_LEVEL) diag.setLogger(throttledDiag(logger), DiagLogLevel.WARN);
  const { NodeSDK } = require('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({
    serviceName: config.serviceName,
    instrumentations: options.instrumentations === false ? [] : ensureInstrumentations(),
    spanProcessors: options.spanProcessors,
    // Traces only: metrics and logs have their own paths here.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  active = true;
  logger.info('tracing on', { service: config.serviceName, reason: config.reason });

  const timeoutMs = options.shutdownTimeoutMs ?? 2000;
  let stopping: Promise<void> | undefined;
  const stop = async () => {
    active = false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); });
    await Promise.race([sdk.shutdown().catch((err: unknown) => logger.warn('tracing shutdown failed', { err })), timedOut]);
    clearTimeout(timer);
    // Unregister, so a later startTelemetry in the same process (tests) starts clean.
    diag.disable();
    trace.disable();
    context.disable();
    propagation.disable();
  };
  return { enabled: true, shutdown: () => (stopping ??= stop()) };
}

/**
 * The SDK's own complaints (an exporter that cannot reach its collector fails every few seconds)
 * as log lines, at most one a minute, with how many were left out.
 */
function throttledDiag(logger: Logger, everyMs = 60_000): DiagLogger {
  let lastMs = -Infinity;
  let suppressed = 0;
  const emit = (msg: string, ...args: unknown[]) => {
    const now = Date.now();
    if (now - lastMs < everyMs) { suppressed++; return; }
    lastMs = now;
    logger.warn('tracing: ' + msg, { detail: args.map(String).join(' ').slice(0, 500), suppressed });
    suppressed = 0;
  };
  const ignore = () => undefined;
  return { error: emit, warn: emit, info: ignore, debug: ignore, verbose: ignore };
}
