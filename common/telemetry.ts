/**
 * Tracing for a process: OpenTelemetry's trace SDK for Node (traces only: metrics are Prometheus
 * text on the admin port, logs are JSON lines on stderr), configured by the standard OTEL_*
 * variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
 * OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES...). Only the pieces traces need
 * are installed, not @opentelemetry/sdk-node with its metric and log exporters: the tracer
 * provider, the three OTLP trace exporters (one loaded, per protocol), the resource detectors and
 * the gRPC and cassandra-driver instrumentations.
 *
 * On by default in a service process, off by default in embedded mode (a trial on a laptop has
 * no collector); OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turns it off anywhere. Off
 * means nothing of the SDK is even loaded: @opentelemetry/api answers with its no-op tracer and
 * the span helpers (telemetry/spans.ts) return before building anything.
 *
 * The SDK is process-global by OpenTelemetry's design (one registered tracer provider, context
 * manager and propagator), so this module keeps the one flag that mirrors it.
 */
import { context, diag, DiagConsoleLogger, DiagLogLevel, propagation, trace, type DiagLogger } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
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
    // Connect is the gateway's hours-long stream (per-call spans ride Call.trace_parent instead),
    // LookupStream logic's (RouterClient makes an im.router.lookup span per lookup instead);
    // Heartbeat is a timer every few seconds: as spans they would be noise.
    new GrpcInstrumentation({ ignoreGrpcMethods: ['Connect', 'LookupStream', 'Heartbeat'] }),
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
   * off; the message's own spans (telemetry/spans.ts) do not depend on it.
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
  setDiagLogger(logger, process.env);
  const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node') as typeof import('@opentelemetry/sdk-trace-node');
  const { registerInstrumentations } = require('@opentelemetry/instrumentation') as typeof import('@opentelemetry/instrumentation');
  const provider = new NodeTracerProvider({
    resource: detectResource(config.serviceName),
    spanProcessors: options.spanProcessors ?? spanProcessorsFromEnv(process.env),
  });
  // The AsyncLocalStorage context manager and the W3C trace-context and baggage propagators.
  provider.register();
  registerInstrumentations({ instrumentations: options.instrumentations === false ? [] : ensureInstrumentations() });
  active = true;
  logger.info('tracing on', { service: config.serviceName, reason: config.reason });

  const timeoutMs = options.shutdownTimeoutMs ?? 2000;
  let stopping: Promise<void> | undefined;
  const stop = async () => {
    active = false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); });
    await Promise.race([provider.shutdown().catch((err: unknown) => logger.warn('tracing shutdown failed', { err })), timedOut]);
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
 * The resource every span carries, as the Node SDK detects it: OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_SERVICE_NAME, the process and the host, with service.name set to config.serviceName.
 */
function detectResource(serviceName: string) {
  const { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes } =
    require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  return defaultResource()
    .merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }))
    .merge(resourceFromAttributes({ 'service.name': serviceName }));
}

/**
 * One processor per OTEL_TRACES_EXPORTER entry (default otlp): otlp batches to the exporter that
 * OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL names (http/protobuf by
 * default, http/json, grpc), which reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
 * itself; console writes each span to stdout. The batch processor reads OTEL_BSP_*.
 */
function spanProcessorsFromEnv(env: Env): SpanProcessor[] {
  const { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor } =
    require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
  const names = [...new Set((env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter(Boolean))];
  const processors: SpanProcessor[] = [];
  for (const name of names.length > 0 ? names : ['otlp']) {
    if (name === 'otlp') processors.push(new BatchSpanProcessor(otlpExporter(env)));
    else if (name === 'console') processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    else diag.warn(`unsupported OTEL_TRACES_EXPORTER value ${JSON.stringify(name)} (otlp, console or none)`);
  }
  return processors;
}

function otlpExporter(env: Env): SpanExporter {
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim() || 'http/protobuf';
  switch (protocol) {
    case 'grpc':
      return new (require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
    case 'http/json':
      return new (require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
    default:
      if (protocol !== 'http/protobuf') diag.warn(`unsupported OTLP traces protocol ${JSON.stringify(protocol)}; using http/protobuf`);
      return new (require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
  }
}

/**
 * The SDK's own complaints go to the log (throttled); with OTEL_LOG_LEVEL set, to the console at
 * that level instead, as the OpenTelemetry SDKs do.
 */
function setDiagLogger(logger: Logger, env: Env): void {
  const level = env.OTEL_LOG_LEVEL?.trim().toUpperCase();
  if (!level) { diag.setLogger(throttledDiag(logger), DiagLogLevel.WARN); return; }
  const named: unknown = DiagLogLevel[level as keyof typeof DiagLogLevel];
  diag.setLogger(new DiagConsoleLogger(), typeof named === 'number' ? named : DiagLogLevel.INFO);
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
