/** Internal gRPC services run on the generated codecs, interchangeable with proto-loader's. */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { InvalidUtf8Error } from '../common/errors';
import { LOADER_OPTIONS, loadLogicProto, PROTO_DIR } from './load';

type Method = grpc.MethodDefinition<unknown, unknown>;

function reflectionConnect(): Method {
  const def = protoLoader.loadSync(path.join(PROTO_DIR, 'internal', 'logic.proto'), LOADER_OPTIONS);
  return (def['im.internal.v1.LogicGateway'] as unknown as Record<string, Method>).Connect;
}

const CALLS = {
  calls: [
    { callId: 2 ** 40 + 1, op: 100, uid: 'alice', deviceId: 'phone', connId: 'c1', node: 'gw-1', body: Buffer.from('0a01', 'hex'), traceParent: '' },
    { callId: 2, op: 101, uid: 'bob', deviceId: 'd', connId: 'c2', node: 'gw-1', body: Buffer.alloc(0), traceParent: '00-abc-def-01' },
  ],
};

describe('internal gRPC on the generated codecs', () => {
  const generated = (loadLogicProto().im.internal.v1.LogicGateway as unknown as { service: Record<string, Method> }).service.Connect;
  const reflection = reflectionConnect();

  it('reads what proto-loader writes and the other way round, to the same objects', () => {
    const viaReflection = generated.requestDeserialize(reflection.requestSerialize(CALLS));
    const viaGenerated = reflection.requestDeserialize(generated.requestSerialize(CALLS));
    assert.deepEqual(JSON.parse(JSON.stringify(viaReflection)), JSON.parse(JSON.stringify(viaGenerated)));
    assert.deepEqual(JSON.parse(JSON.stringify(viaReflection)), JSON.parse(JSON.stringify(CALLS)));
    const results = { results: [{ callId: 7, body: Buffer.from('ok'), code: 0, message: '', retryable: false }] };
    assert.deepEqual(JSON.parse(JSON.stringify(generated.responseDeserialize(reflection.responseSerialize(results)))),
      JSON.parse(JSON.stringify(reflection.responseDeserialize(generated.responseSerialize(results)))));
  });

  it('refuses a string that is not UTF-8 instead of replacing its bytes', () => {
    // CallBatch{calls: [Call{uid: "a\xff"}]}
    assert.throws(() => generated.requestDeserialize(Buffer.from('0a041a0261ff', 'hex')), InvalidUtf8Error);
  });
});
