/**
 * Browser stand-in for node:http / node:https: `get()` on fetch(), the one call the SDK's route
 * API client makes (client/route.ts). The route API answers cross-origin reads
 * (Access-Control-Allow-Origin), so the page can ask the router directly. Only for the web
 * page's bundle.
 */
import { Buffer } from './buffer';

type Handler = (arg?: unknown) => void;

class Emitter {
  private readonly handlers = new Map<string, Handler[]>();
  on(event: string, h: Handler): this {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), h]);
    return this;
  }
  protected fire(event: string, arg?: unknown): void {
    for (const h of this.handlers.get(event) ?? []) h(arg);
  }
}

class Response extends Emitter {
  constructor(readonly statusCode: number, readonly headers: Record<string, string>) {
    super();
  }
  resume(): void {}
  deliver(body: Buffer): void {
    this.fire('data', body);
    this.fire('end');
  }
  fail(err: Error): void {
    this.fire('error', err);
  }
}

class Request extends Emitter {
  private readonly abort = new AbortController();
  constructor(url: URL | string, headers: Record<string, string>, onResponse: (res: Response) => void) {
    super();
    fetch(url, { headers, signal: this.abort.signal, credentials: 'omit' }).then(async (r) => {
      const res = new Response(r.status, Object.fromEntries([...r.headers].map(([k, v]) => [k.toLowerCase(), v])));
      onResponse(res);
      try {
        res.deliver(Buffer.from(await r.arrayBuffer()));
      } catch (err) {
        res.fail(err as Error);
      }
    }, (err: Error) => {
      if (!this.abort.signal.aborted) this.fire('error', err);
    });
  }
  destroy(): void {
    this.abort.abort();
  }
}

export function get(url: URL | string, options: { headers?: Record<string, string> }, onResponse: (res: Response) => void): Request {
  return new Request(url, options.headers ?? {}, onResponse);
}

export default { get };
