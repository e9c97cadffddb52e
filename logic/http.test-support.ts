/**
 * Test helpers for the client HTTP API: requests with fetch, every answer checked against the
 * OpenAPI document's schemas (Ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses), and a record of
 * which documented operations answered 200 so a test can require all of them.
 */
import * as assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020';
import { OPENAPI_DOCUMENT } from './http-openapi';

export interface HttpAnswer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  /** Sent as is (with Content-Type application/json unless contentType says otherwise). */
  rawBody?: string;
  contentType?: string;
}

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>> };
const doc = OPENAPI_DOCUMENT as unknown as Doc;

const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'im-openapi', components: OPENAPI_DOCUMENT.components });

/** The documented path template a concrete path belongs to ("/v1/groups/{groupId}"). */
export function templateOf(path: string): string | undefined {
  return Object.keys(doc.paths).find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
}

/** Every documented operation as "METHOD /template". */
export function documentedOperations(): string[] {
  return Object.entries(doc.paths).flatMap(([t, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${t}`));
}

/** Checks `value` against components.schemas[name]; fails the test naming every violation. */
export function assertSchema(name: string, value: unknown, what: string): void {
  const validate = ajv.getSchema(`im-openapi#/components/schemas/${name}`);
  assert.ok(validate, `no schema ${name}`);
  assert.ok(validate(value), `${what}: does not match ${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`);
}

export class HttpApiClient {
  /** "METHOD /template" of every documented operation that answered 200. */
  readonly covered = new Set<string>();

  constructor(readonly baseUrl: string) {}

  /**
   * One request. The answer must be JSON, and match the documented schema of its status for that
   * operation (200: the operation's own; errors: Error).
   */
  async call(method: string, path: string, o: CallOptions = {}): Promise<HttpAnswer> {
    const headers: Record<string, string> = {};
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    let body: string | undefined = o.rawBody;
    if (o.body !== undefined) body = JSON.stringify(o.body);
    if (body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, body });
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${method} ${path}: content-type`);
    const json = await res.json() as Record<string, unknown>;
    const template = templateOf(path.split('?')[0]);
    const op = template === undefined ? undefined : doc.paths[template][method.toLowerCase()];
    if (res.status === 200) {
      assert.ok(op, `${method} ${path} answered 200 but is not in the OpenAPI document`);
      const ref = op.responses['200'].content?.['application/json'].schema.$ref;
      if (ref) assertSchema(ref.split('/').pop()!, json, `${method} ${path}`);
      this.covered.add(`${method} ${template}`);
    } else {
      assertSchema('Error', json, `${method} ${path} (${res.status})`);
    }
    return { status: res.status, headers: res.headers, json };
  }

  /** A call that must answer 200; returns the body. */
  async ok(method: string, path: string, o: CallOptions = {}): Promise<Record<string, unknown>> {
    const a = await this.call(method, path, o);
    assert.equal(a.status, 200, `${method} ${path}: ${JSON.stringify(a.json)}`);
    return a.json;
  }

  /** A call that must fail with this status and code. */
  async fails(method: string, path: string, status: number, code: number, o: CallOptions = {}): Promise<HttpAnswer> {
    const a = await this.call(method, path, o);
    assert.deepEqual([a.status, a.json.code], [status, code], `${method} ${path}: ${JSON.stringify(a.json)}`);
    return a;
  }
}
