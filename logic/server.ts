/**
 * The LogicGateway gRPC server: one long-lived Connect stream per gateway, calls dispatched through
 * the op registry. `server` is exposed so later features (an internal admin API) can add their
 * services to the same port before start().
 */
import * as grpc from '@grpc/grpc-js';
import { bindServer } from '../common/grpc';
import { loadLogicProto } from '../proto/load';
import { grpcServerCredentials, type GrpcTlsConfig } from '../common/grpc-tls';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';
import type { OpRegistry } from './ops';
import { CallStream } from './stream';
import type { ConnectCall } from './stream';
import { compileNumbers } from '../common/options';

export interface LogicServerOptions {
  registry: OpRegistry;
  host: string;
  port: number;
  /** Calls a stream may have outstanding; more are answered OVERLOADED at once. */
  maxInFlightPerStream?: number;
  /** Size at which a ResultBatch is cut (bodies); keeps each gRPC message well under 4 MiB. */
  maxResultBatchBytes?: number;
  /** stop() waits this long for running calls to finish before cutting streams. */
  stopTimeoutMs?: number;
  /** Mutual TLS (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls?: GrpcTlsConfig;
  logger?: Logger;
}

export class LogicServer {
  readonly server = new grpc.Server();
  private readonly registry: OpRegistry;
  private readonly host: string;
  private readonly port: number;
  private readonly maxInFlightPerStream: number;
  private readonly maxResultBatchBytes: number;
  private readonly stopTimeoutMs: number;
  private readonly logger: Logger;
  private readonly grpcTls: GrpcTlsConfig | undefined;
  private readonly streams = new Set<CallStream>();
  private started: Promise<number> | undefined;
  private stopped: Promise<void> | undefined;

  constructor(opts: LogicServerOptions) {
    this.registry = opts.registry;
    this.host = opts.host;
    this.port = opts.port;
    ({ maxInFlightPerStream: this.maxInFlightPerStream, maxResultBatchBytes: this.maxResultBatchBytes, stopTimeoutMs: this.stopTimeoutMs } =
      compileNumbers('LogicServer', opts, { maxInFlightPerStream: 4096, maxResultBatchBytes: 1_048_576, stopTimeoutMs: 5000 }, { integer: true }));
    this.logger = opts.logger ?? silentLogger;
    this.grpcTls = opts.grpcTls;
    const proto = loadLogicProto();
    this.server.addService(proto.im.internal.v1.LogicGateway.service, {
      Connect: (call: ConnectCall) => this.onConnect(call),
    });
  }

  /** Binds and serves; resolves with the bound port (useful with port 0). */
  start(): Promise<number> {
    if (this.stopped) return Promise.reject(new Error('LogicServer was stopped'));
    this.started ??= bindServer(this.server, this.host, this.port, grpcServerCredentials(this.grpcTls, this.logger)).then((port) => {
      this.logger.info('logic listening', { host: this.host, port });
      return port;
    });
    return this.started;
  }

  /**
   * Stops taking streams, lets running calls finish (new ones get UNAVAILABLE), ends every stream
   * and closes the server. Idempotent; bounded by stopTimeoutMs, after which streams are cut.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    await this.started?.catch(() => undefined);
    const closed = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    const drained = Promise.all([...this.streams].map((s) => s.drain())).then(() => closed);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), this.stopTimeoutMs); });
    const late = await Promise.race([drained.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      this.logger.warn('logic stop timed out; cutting streams', { streams: this.streams.size });
      for (const s of this.streams) s.abort();
      this.server.forceShutdown();
    }
  }

  private onConnect(call: ConnectCall): void {
    const peer = safePeer(call);
    const stream = new CallStream(call, {
      registry: this.registry,
      maxInFlight: this.maxInFlightPerStream,
      maxBatchBytes: this.maxResultBatchBytes,
      logger: this.logger.child({ peer }),
    });
    this.streams.add(stream);
    this.logger.debug('gateway stream opened', { peer, streams: this.streams.size });
    void stream.done.then(() => this.streams.delete(stream));
    if (this.stopped) void stream.drain();
  }
}

function safePeer(call: ConnectCall): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}

