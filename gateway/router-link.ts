/**
 * The gateway node's registration with the router: a heartbeat every routerHeartbeatMs with the
 * node's status (addresses, load, draining), and the node's whole session list whenever the
 * router did not know the node, at the first heartbeat of a run, and once after a hot upgrade's
 * adoption ended. A push path found broken (the bus reconnected, the router had forgotten the
 * node) makes every client sync.
 */
import type { Bus } from '../bus/bus';
import type { Logger } from '../common/log';
import type { GatewayStatus, RouterApi, SessionRef } from '../router/api';
import { within } from './within';

export interface RouterLinkOptions {
  node: string;
  router: RouterApi;
  bus: Bus;
  intervalMs: number;
  logger: Logger;
  status(): GatewayStatus;
  sessions(): SessionRef[];
  /** Tell every client to sync: some pushes may not have come. */
  hintSync(why: string): void;
  /** A successor in a hot upgrade: no session list until endHold() (it would drop the sessions the old process still holds). */
  holdSnapshots: boolean;
}

export class RouterLink {
  private readonly o: RouterLinkOptions;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private holding: boolean;
  /** The hold ended: the router gets this process's sessions as the node's (retried by heartbeats until it lands). */
  private snapshotDue = false;
  /** The bus's reconnect count at the last heartbeat (a change means missed pushes). */
  private busReconnects = 0;

  constructor(options: RouterLinkOptions) {
    this.o = options;
    this.holding = options.holdSnapshots;
  }

  /** The first heartbeat now (with the session list, replacing whatever a previous run of this node left), then every intervalMs. */
  start(): void {
    this.loop(true);
  }

  /** A heartbeat is scheduled (false once stop() ended the loop; tests). */
  get scheduled(): boolean {
    return this.timer !== undefined;
  }

  /** Ends the heartbeats for good (drained, or another process reports the node now); no session list is sent after it. */
  stop(): void {
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One heartbeat now, waited for at most maxMs. */
  beat(maxMs: number): Promise<boolean> {
    return within(this.send(), maxMs);
  }

  /** The adoption is over: the router gets this process's sessions now (and at later heartbeats until one lands). */
  async endHold(): Promise<void> {
    this.holding = false;
    this.snapshotDue = true;
    await this.beat(3 * this.o.intervalMs);
  }

  private async send(first = false): Promise<void> {
    // The bus came back since the last beat: pushes published meanwhile never arrived.
    const reconnects = this.o.bus.reconnects;
    if (reconnects !== this.busReconnects) this.o.hintSync('bus reconnected');
    this.busReconnects = reconnects;
    try {
      const reply = await this.o.router.heartbeat(this.o.status());
      if ((first || !reply.known || this.snapshotDue) && !this.ended && !this.holding) {
        await this.o.router.snapshot(this.o.node, this.o.sessions());
        this.snapshotDue = false;
        // A router that had forgotten this node sent its pushes nowhere until now.
        if (!first && !reply.known) this.o.hintSync('router re-registered');
      }
    } catch (err) {
      this.o.logger.warn('router heartbeat failed', { err });
    }
  }

  private loop(first = false): void {
    this.timer = undefined;
    if (this.ended) return;
    // Chained timeouts, not setInterval: a slow router never gets overlapping heartbeats.
    // Bounded wait, so a hung router call cannot stop the heartbeats for good.
    void within(this.send(first), 3 * this.o.intervalMs).then(() => {
      if (this.ended) return;
      this.timer = setTimeout(() => this.loop(), this.o.intervalMs);
    });
  }
}
