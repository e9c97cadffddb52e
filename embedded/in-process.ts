/**
 * Embedded mode's shortcuts: inside one process the gateway calls logic's op registry and logic
 * and the gateway call the route table directly, with the same semantics as the gRPC adapters
 * (logic/stream.ts, router/grpc-server.ts) but without encoding every call into HTTP/2 frames.
 * The distributed mode, and its tests, keep the gRPC paths.
 */
import { errorReply, ImError } from '../common/errors';
import type { Logger } from '../common/log';
import { logicCall } from '../telemetry/hooks';
import type { LogicBackend, LogicCall, LogicCallResult } from '../gateway/logic-client';
import type { OpRegistry } from '../logic/ops';
import type { GatewayStatus, HeartbeatResult, RouterApi, SessionRef } from '../router/api';
import type { RouteTable } from '../router/table';

/** Logic as the gateway sees it, calling the registry in this process. Always up. */
export class InProcessLogic implements LogicBackend {
  readonly streamsUp = 1;

  constructor(private readonly registry: OpRegistry, private readonly logger: Logger) {}

  call(c: LogicCall): Promise<LogicCallResult> {
    // The context is the Caller the op's handler passes on: one object per call, no async frame.
    const ctx = { op: c.op, uid: c.uid, deviceId: c.deviceId, connId: c.connId, node: c.node };
    let p: Promise<Uint8Array>;
    try {
      p = logicCall(c.op, c.traceParent ?? '', () => this.registry.handle(ctx, c.body));
    } catch (err) {
      return Promise.resolve(this.failed(c.op, err));
    }
    return p.then(succeeded, (err: unknown) => this.failed(c.op, err));
  }

  private failed(op: number, err: unknown): LogicCallResult {
    if (!(err instanceof ImError)) this.logger.error('op failed', { op, err: err instanceof Error ? err.stack : String(err) });
    return { body: new Uint8Array(0), ...errorReply(err) };
  }
}

function succeeded(body: Uint8Array): LogicCallResult {
  return { body, code: 0, message: '', retryable: false };
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
