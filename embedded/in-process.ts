/**
 * Embedded mode's shortcuts: inside one process the gateway calls logic's op registry and logic
 * and the gateway call the route table directly, with the same semantics as the gRPC adapters
 * (logic/stream.ts, router/grpc-server.ts) but without encoding every call into HTTP/2 frames.
 * The distributed mode, and its tests, keep the gRPC paths.
 */
import { ImError, toImError } from '../common/errors';
import type { Logger } from '../common/log';
import { logicCall } from '../common/telemetry-hooks';
import type { LogicBackend, LogicCall, LogicCallResult } from '../gateway/logic-client';
import type { OpRegistry } from '../logic/ops';
import type { GatewayStatus, HeartbeatResult, RouterApi, SessionRef } from '../router/api';
import type { RouteTable } from '../router/table';

/** Logic as the gateway sees it, calling the registry in this process. Always up. */
export class InProcessLogic implements LogicBackend {
  readonly streamsUp = 1;

  constructor(private readonly registry: OpRegistry, private readonly logger: Logger) {}

  async call(c: LogicCall): Promise<LogicCallResult> {
    const ctx = { op: c.op, uid: c.uid, deviceId: c.deviceId, connId: c.connId, node: c.node };
    try {
      const body = await logicCall(c.op, c.traceParent ?? '', () => this.registry.handle(ctx, c.body));
      return { body, code: 0, message: '', retryable: false };
    } catch (err) {
      const im = toImError(err);
      if (!(err instanceof ImError)) this.logger.error('op failed', { op: c.op, err: err instanceof Error ? err.stack : String(err) });
      return { body: new Uint8Array(0), code: im.code, message: err instanceof ImError ? im.message : 'internal error', retryable: im.retryable };
    }
  }
}

/** The router as its callers see it, backed by the route table in this process. */
export class InProcessRouter implements RouterApi {
  constructor(private readonly table: RouteTable, private readonly heartbeatIntervalMs: number) {}

  async bind(sessions: SessionRef[]): Promise<SessionRef[]> {
    return this.table.bind(sessions);
  }

  async unbind(sessions: SessionRef[]): Promise<void> {
    this.table.unbind(sessions);
  }

  async snapshot(node: string, sessions: SessionRef[]): Promise<void> {
    this.table.snapshot(node, sessions);
  }

  async lookup(uids: string[]): Promise<SessionRef[]> {
    return this.table.lookup(uids);
  }

  async heartbeat(status: GatewayStatus): Promise<HeartbeatResult> {
    return { heartbeatIntervalMs: this.heartbeatIntervalMs, known: this.table.heartbeat(status).known };
  }

  close(): void {
    // Nothing to release: the table belongs to the RouterService.
  }
}
