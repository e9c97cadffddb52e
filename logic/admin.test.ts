/**
 * LogicAdmin end to end: a real LogicServer over a real SQLite store, in-process bus and real
 * router (RouterService + RouterClient over gRPC), called by a plain grpc-js client built from
 * admin.proto alone, as another team's backend would.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import * as protoLoader from '@grpc/proto-loader';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import type { IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { InProcessBus, gatewaySubject } from '../bus/bus';
import { decodeDeliveryBatch } from '../proto/delivery';
import type { DeliveryBatch } from '../proto/delivery';
import { RouterClient } from '../router/client';
import { RouterService } from '../router/service';
import { SqliteStore } from '../storage/sqlite/store';
import { LogicClient } from '../gateway/logic-client';
import { encode, Op } from '../proto/wire';
import { addInternalApis } from './admin';
import { adminClient, bearerMetadata, failedStatus, LOADER, type Reply, unary } from './admin-client.test-support';
import { OpRegistry, registerClientOps } from './ops';
import { LogicServer } from './server';
import { LogicService } from './service';
import type { Caller } from './service';
import { pushedTo } from './logic.test-support';

const HOST = '127.0.0.1';
const REFLECTION_PROTO = path.join(
  path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');


/** Two admin tokens accepted at once, as during a rotation. */
const TOKEN = randomBytes(24).toString('hex');
const NEXT_TOKEN = randomBytes(24).toString('hex');
const bearer = (token = TOKEN, scheme = 'Bearer') => bearerMetadata(token, scheme);

function caller(uid: string): Caller {
  return { uid, deviceId: 'd1', connId: `${uid}-c1`, node: 'gw1' };
}

describe('LogicAdmin over gRPC', () => {
  let routerService: RouterService;
  let router: RouterClient;
  let gatewayRouter: RouterClient;
  let store: SqliteStore;
  let bus: InProcessBus;
  let service: LogicService;
  let logic: LogicServer;
  let admin: grpc.Client;
  let port: number;
  let closeInternal: () => void;

  before(async () => {
    routerService = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0 });
    const { grpcPort } = await routerService.start();
    router = new RouterClient({ address: `${HOST}:${grpcPort}` });
    gatewayRouter = new RouterClient({ address: `${HOST}:${grpcPort}` });
    store = SqliteStore.open({ path: ':memory:' });
    bus = new InProcessBus();
    service = new LogicService({ store, bus, router });
    const registry = new OpRegistry();
    registerClientOps(registry, service);
    logic = new LogicServer({ registry, host: HOST, port: 0 });
    const internal = addInternalApis(logic.server, { service, router, admin: { tokens: [TOKEN, NEXT_TOKEN] } });
    closeInternal = () => internal.close();
    port = await logic.start();
    admin = adminClient(`${HOST}:${port}`);
  });

  after(async () => {
    admin?.close();
    closeInternal?.();
    await logic?.stop();
    await service?.close();
    router?.close();
    gatewayRouter?.close();
    await routerService?.stop();
    await bus?.close();
    await store?.close();
  });

  const call = (method: string, req: object, md = bearer()) => unary(admin, method, req, md);

  async function failure(method: string, req: object, md = bearer()): Promise<{ code: grpc.status; appCode: string; details: string }> {
    const e = await failedStatus(admin, method, req, md);
    return { code: e.code, appCode: String(e.metadata.get('im-app-code')[0]), details: e.details };
  }

  async function inbox(uid: string): Promise<Array<{ msgId: string; from: string; clientMsgId: string; content: Uint8Array }>> {
    return (await service.sync(caller(uid), { fromSeq: 0, limit: 500 })).messages;
  }

  const uids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  describe('credentials', () => {
    it('refuses a call without credentials: UNAUTHENTICATED, im-app-code 1003, nothing sent', async () => {
      const req = { from: 'system', to: 'cred-a', idempotency_key: 'no-token', content: Buffer.from('x') };
      const refused = await failure('SendMessage', req, new grpc.Metadata());
      assert.equal(refused.code, grpc.status.UNAUTHENTICATED);
      assert.equal(refused.appCode, '1003');
      assert.match(refused.details, /Bearer <admin token>/);
      assert.equal((await inbox('cred-a')).length, 0);
    });

    it('refuses a wrong token or another scheme: UNAUTHENTICATED (1004, 1003), nothing done', async () => {
      const req = { from: 'system', to: 'cred-b', idempotency_key: 'wrong-token', content: Buffer.from('x') };
      const wrong = await failure('SendMessage', req, bearer(randomBytes(24).toString('hex')));
      assert.equal(wrong.code, grpc.status.UNAUTHENTICATED);
      assert.equal(wrong.appCode, '1004');
      assert.match(wrong.details, /not an accepted admin token/);
      assert.equal((await failure('GetGroup', { group_id: 'g' }, bearer(TOKEN, 'Basic'))).appCode, '1003');
      assert.equal((await failure('GetGroup', { group_id: 'g' }, bearer(`${TOKEN}x`))).appCode, '1004');
      assert.equal((await inbox('cred-b')).length, 0);
    });

    it('accepts each configured token (rotation): the send reaches the inbox', async () => {
      for (const [i, token] of [TOKEN, NEXT_TOKEN].entries()) {
        const res = await call('SendMessage', { from: 'system', to: 'cred-c', idempotency_key: `rot-${i}`, content: Buffer.from(`t${i}`) }, bearer(token));
        assert.equal((await inbox('cred-c')).filter((m) => m.msgId === res.msg_id).length, 1);
      }
      // The scheme is case-insensitive (RFC 6750).
      await call('GetGroup', { group_id: (await call('CreateGroup', { owner: 'cred-c', name: 'g' })).group_id }, bearer(TOKEN, 'bearer'));
    });

    it('leaves the gateway stream on the same port alone: a gateway holds no admin token', async () => {
      const gateway = new LogicClient({ addresses: [`${HOST}:${port}`] });
      gateway.start();
      try {
        const body = encode('SendReq', { to: 'cred-d', clientMsgId: 'via-gateway', content: Buffer.from('hi') });
        const r = await gateway.call({ op: Op.SEND, uid: 'cred-e', deviceId: 'd1', connId: 'c1', node: 'gw1', body });
        assert.equal(r.code, 0, r.message);
        assert.equal((await inbox('cred-d')).filter((m) => m.clientMsgId === 'via-gateway').length, 1);
      } finally {
        await gateway.close();
      }
    });
  });

  describe('SendMessage', () => {
    it('sends as "system" into the recipient\'s inbox and pushes to their gateway', async () => {
      // "system" is online too: an admin send has no sending connection, so all its devices get it.
      const sessions = [
        { uid: 'bob', deviceId: 'phone', node: 'gw-push', connId: 'c-bob' },
        { uid: 'system', deviceId: 'phone', node: 'gw-push', connId: 'c-system' },
      ];
      await gatewayRouter.bind(sessions);
      const batches: DeliveryBatch[] = [];
      const stop = bus.subscribe(gatewaySubject('gw-push'), (data) => batches.push(decodeDeliveryBatch(data)));
      try {
        const res = await call('SendMessage', {
          from: 'system', to: 'bob', idempotency_key: 'welcome-bob', content_type: 'text/plain', content: Buffer.from('welcome!'),
        });
        assert.equal(res.duplicate, false);
        assert.equal(res.conv_id, 'p:bob:system');
        assert.ok(res.msg_id.length > 0 && res.seq > 0 && res.sent_at_ms > 0);

        const got = (await inbox('bob')).filter((m) => m.msgId === res.msg_id);
        assert.equal(got.length, 1);
        assert.equal(got[0].from, 'system');
        assert.equal(got[0].clientMsgId, 'welcome-bob');
        assert.equal(Buffer.from(got[0].content).toString(), 'welcome!');

        await service.flushPushes();
        await new Promise((r) => setImmediate(r));
        const pushed = pushedTo(batches).map((d) => [d.uid, d.seq > 0, d.exceptConnId]).sort();
        assert.deepEqual(pushed, [['bob', true, ''], ['system', true, '']]);
      } finally {
        stop();
        await gatewayRouter.unbind(sessions);
      }
    });

    it('answers a repeated idempotency_key with the same message, duplicate=true', async () => {
      const req = { from: 'system', to: 'carol', idempotency_key: 'notice-1', content: Buffer.from('once') };
      const first = await call('SendMessage', req);
      const second = await call('SendMessage', req);
      assert.equal(first.duplicate, false);
      assert.equal(second.duplicate, true);
      assert.equal(second.msg_id, first.msg_id);
      assert.equal(second.seq, first.seq);
      const got = (await inbox('carol')).filter((m) => m.clientMsgId === 'notice-1');
      assert.equal(got.length, 1);
      assert.equal(Buffer.from(got[0].content).toString(), 'once');
    });

    it('refuses an idempotency_key that is not UTF-8 with INVALID_ARGUMENT and im-app-code 2000, sending nothing', async () => {
      // SendMessageRequest{from: "system", to: "carol", idempotency_key: "k-\xff", content: "x"}, key as raw bytes.
      const body = Buffer.from(protobuf.Writer.create().uint32(10).string('system').uint32(18).string('carol')
        .uint32(34).bytes(Buffer.from([0x6b, 0x2d, 0xff])).uint32(50).bytes(Buffer.from('x')).finish());
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        admin.makeUnaryRequest('/im.internal.v1.LogicAdmin/SendMessage', (b: Buffer) => b, (b: Buffer) => b, body, bearer(),
          (e: grpc.ServiceError | null) => (e ? resolve(e) : reject(new Error('SendMessage was expected to fail'))));
      });
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(String(err.metadata.get('im-app-code')[0]), '2000');
      assert.equal((await inbox('carol')).filter((m) => m.clientMsgId.startsWith('k-')).length, 0);
    });

    it('refuses the same idempotency_key with other content: ALREADY_EXISTS, im-app-code 2006', async () => {
      const req = { from: 'system', to: 'carol', idempotency_key: 'notice-2', content: Buffer.from('once') };
      await call('SendMessage', req);
      const reused = await failure('SendMessage', { ...req, content: Buffer.from('twice?') });
      assert.equal(reused.code, grpc.status.ALREADY_EXISTS);
      assert.equal(reused.appCode, '2006');
      const got = (await inbox('carol')).filter((m) => m.clientMsgId === 'notice-2');
      assert.deepEqual(got.map((m) => Buffer.from(m.content).toString()), ['once']);
    });

    it('creates exactly one message when the same key arrives concurrently', async () => {
      const req = { from: 'billing', to: 'dave', idempotency_key: 'invoice-42', content: Buffer.from('paid') };
      const replies = await Promise.all(Array.from({ length: 12 }, () => call('SendMessage', req)));
      assert.equal(new Set(replies.map((r) => r.msg_id)).size, 1);
      assert.equal(replies.filter((r) => !r.duplicate).length, 1);
      assert.equal((await inbox('dave')).filter((m) => m.clientMsgId === 'invoice-42').length, 1);
    });

    it('sends into a group only when `from` is a member', async () => {
      const g = await call('CreateGroup', { owner: 'gs-owner', name: 'news', members: ['gs-a'] });
      const res = await call('SendMessage', { from: 'gs-owner', group_id: g.group_id, idempotency_key: 'k1', content: Buffer.from('hi') });
      assert.equal(res.conv_id, `g:${g.group_id}`);
      assert.equal((await inbox('gs-a')).filter((m) => m.msgId === res.msg_id).length, 1);

      const denied = await failure('SendMessage', { from: 'system', group_id: g.group_id, idempotency_key: 'k2' });
      assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
      assert.equal(denied.appCode, '2002');
    });

    it('rejects bad requests with INVALID_ARGUMENT and the app code', async () => {
      const noKey = await failure('SendMessage', { from: 'system', to: 'bob' });
      assert.equal(noKey.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(noKey.appCode, '2000');
      assert.match(noKey.details, /^BAD_REQUEST\(2000\): idempotencyKey/);

      const both = await failure('SendMessage', { from: 'system', to: 'bob', group_id: 'g', idempotency_key: 'x' });
      assert.equal(both.code, grpc.status.INVALID_ARGUMENT);
      const badFrom = await failure('SendMessage', { from: '', to: 'bob', idempotency_key: 'x' });
      assert.equal(badFrom.code, grpc.status.INVALID_ARGUMENT);
      assert.match(badFrom.details, /from/);
    });

    it('maps oversized content to RESOURCE_EXHAUSTED', async () => {
      const big = await failure('SendMessage', {
        from: 'system', to: 'bob', idempotency_key: 'big', content: Buffer.alloc(service.maxContentBytes + 1),
      });
      assert.equal(big.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(big.appCode, '2005');
    });
  });

  describe('groups', () => {
    it('creates, adds and removes as the system acting as owner, and reads back with GetGroup', async () => {
      const g = await call('CreateGroup', { owner: 'ann', name: 'team', members: ['ben'] });
      assert.equal(g.owner, 'ann');
      assert.deepEqual(g.members, ['ann', 'ben']);

      const added = await call('AddMembers', { actor: '', group_id: g.group_id, uids: ['cat', 'dan'] });
      assert.deepEqual(added.members, ['ann', 'ben', 'cat', 'dan']);
      const removed = await call('RemoveMembers', { actor: '', group_id: g.group_id, uids: ['ben', 'ann'] });
      assert.deepEqual(removed.members, ['cat', 'dan']);
      assert.equal(removed.owner, 'cat', 'ownership passes to the longest-standing member');

      const read = await call('GetGroup', { group_id: g.group_id });
      assert.deepEqual(read, { ...removed, created_at_ms: g.created_at_ms });
    });

    it('holds a named actor to the client rules: PERMISSION_DENIED for a non-member or non-owner', async () => {
      const g = await call('CreateGroup', { owner: 'po', name: 'perm', members: ['pm'] });
      const outsider = await failure('AddMembers', { actor: 'stranger', group_id: g.group_id, uids: ['x1'] });
      assert.equal(outsider.code, grpc.status.PERMISSION_DENIED);
      assert.equal(outsider.appCode, '2002');
      const notOwner = await failure('RemoveMembers', { actor: 'pm', group_id: g.group_id, uids: ['po'] });
      assert.equal(notOwner.code, grpc.status.PERMISSION_DENIED);
      assert.equal(notOwner.appCode, '2004');
      // A member may add (client rule), and the group is unchanged by the refusals.
      const added = await call('AddMembers', { actor: 'pm', group_id: g.group_id, uids: ['x1'] });
      assert.deepEqual(added.members, ['po', 'pm', 'x1']);
    });

    it('refuses a group past the cap with FAILED_PRECONDITION and im-app-code 2003', async () => {
      const tooBig = await failure('CreateGroup', { owner: 'cap-owner', name: 'big', members: uids('cap', 100) });
      assert.equal(tooBig.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(tooBig.appCode, '2003');
      assert.equal(tooBig.details, 'GROUP_FULL(2003): group would have 101 members; the limit is 100');

      const full = await call('CreateGroup', { owner: 'cap-owner', name: 'full', members: uids('cap', 99) });
      assert.equal(full.members.length, 100);
      const more = await failure('AddMembers', { actor: '', group_id: full.group_id, uids: ['one-more'] });
      assert.equal(more.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(more.appCode, '2003');
      assert.equal((await call('GetGroup', { group_id: full.group_id })).members.length, 100);
    });

    it('answers NOT_FOUND for an unknown group', async () => {
      for (const [method, req] of [
        ['GetGroup', { group_id: 'no-such-group' }],
        ['AddMembers', { actor: '', group_id: 'no-such-group', uids: ['a'] }],
        ['AddMembers', { actor: 'ann', group_id: 'no-such-group', uids: ['a'] }],
        ['RemoveMembers', { actor: '', group_id: 'no-such-group', uids: ['a'] }],
      ] as const) {
        const f = await failure(method, req);
        assert.equal(f.code, grpc.status.NOT_FOUND, method);
        assert.equal(f.appCode, '2001', method);
      }
      const empty = await failure('GetGroup', { group_id: '' });
      assert.equal(empty.code, grpc.status.INVALID_ARGUMENT);
    });
  });

  describe('OnlineDevices', () => {
    it('returns the sessions bound in the router, grouped by uid in request order', async () => {
      const sessions = [
        { uid: 'on-a', deviceId: 'phone', node: 'gw1', connId: 'c1' },
        { uid: 'on-b', deviceId: 'desk', node: 'gw2', connId: 'c7' },
        { uid: 'on-a', deviceId: 'tablet', node: 'gw2', connId: 'c8' },
      ];
      await gatewayRouter.bind(sessions);
      const res = await call('OnlineDevices', { uids: ['on-b', 'offline-user', 'on-a'] });
      assert.deepEqual(res.devices.map((d: Reply) => `${d.uid}/${d.device_id}@${d.node}/${d.conn_id}`), [
        'on-b/desk@gw2/c7', 'on-a/phone@gw1/c1', 'on-a/tablet@gw2/c8',
      ]);

      await gatewayRouter.unbind([sessions[0]]);
      const after = await call('OnlineDevices', { uids: ['on-a'] });
      assert.deepEqual(after.devices.map((d: Reply) => d.conn_id), ['c8']);
    });

    it('rejects an empty or invalid uid list', async () => {
      assert.equal((await failure('OnlineDevices', { uids: [] })).code, grpc.status.INVALID_ARGUMENT);
      assert.equal((await failure('OnlineDevices', { uids: ['bad:uid'] })).code, grpc.status.INVALID_ARGUMENT);
    });
  });

  describe('server reflection', () => {
    /** One request on a fresh v1 ServerReflectionInfo stream. */
    function reflect(req: object, at = port): Promise<Reply> {
      const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO, LOADER)) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      const client = new pkg.grpc.reflection.v1.ServerReflection(`${HOST}:${at}`, grpc.credentials.createInsecure());
      return new Promise((resolve, reject) => {
        const stream = client.ServerReflectionInfo();
        stream.on('data', (res: Reply) => { resolve(res); stream.end(); });
        stream.on('error', reject);
        stream.on('end', () => client.close());
        stream.write(req);
      });
    }

    it('needs no token (it tells only what admin.proto says) and lists LogicAdmin and LogicGateway', async () => {
      const res = await reflect({ list_services: '*' });
      const names = res.list_services_response.service.map((s: Reply) => s.name);
      assert.ok(names.includes('im.internal.v1.LogicAdmin'), names.join());
      assert.ok(names.includes('im.internal.v1.LogicGateway'), names.join());
    });

    it('describes LogicAdmin so a tool can build calls without the .proto', async () => {
      const res = await reflect({ file_containing_symbol: 'im.internal.v1.LogicAdmin' });
      const files = (res.file_descriptor_response.file_descriptor_proto as Buffer[])
        .map((b) => FileDescriptorProto.decode(b) as unknown as IFileDescriptorProto);
      const svc = files.flatMap((f) => f.service ?? []).find((s) => s.name === 'LogicAdmin');
      assert.ok(svc, 'LogicAdmin descriptor returned');
      const methods = (svc.method ?? []).map((m) => m.name).sort();
      assert.deepEqual(methods, ['AddMembers', 'CreateGroup', 'GetGroup', 'OnlineDevices', 'RemoveMembers', 'SendMessage']);
      const sendReq = files.flatMap((f) => f.messageType ?? []).find((m) => m.name === 'SendMessageRequest');
      // The .proto's own field names, so grpcurl accepts {"group_id": ...} as written in the docs.
      assert.deepEqual((sendReq?.field ?? []).map((f) => f.name),
        ['from', 'to', 'group_id', 'idempotency_key', 'content_type', 'content']);
    });

    it('does not serve LogicAdmin when no admin token is configured: UNIMPLEMENTED, not listed', async () => {
      const registry = new OpRegistry();
      registerClientOps(registry, service);
      const bare = new LogicServer({ registry, host: HOST, port: 0 });
      const internal = addInternalApis(bare.server, { service, router, admin: { tokens: [] } });
      const barePort = await bare.start();
      const client = adminClient(`${HOST}:${barePort}`);
      try {
        assert.equal(internal.admin, false);
        for (const md of [new grpc.Metadata(), bearer()]) {
          assert.equal((await failedStatus(client, 'GetGroup', { group_id: 'g' }, md)).code, grpc.status.UNIMPLEMENTED);
        }
        const res = await reflect({ list_services: '*' }, barePort);
        assert.deepEqual(res.list_services_response.service.map((x: Reply) => x.name).filter((n: string) => n.startsWith('im.')),
          ['im.internal.v1.LogicGateway']);
      } finally {
        client.close();
        internal.close();
        await bare.stop();
      }
    });
  });
});
