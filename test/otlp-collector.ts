/**
 * An OTLP trace collector for tests, standing in for an OpenTelemetry Collector: it records what
 * the exporters send and answers that all was accepted.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';

export interface OtlpCollector {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  /** Each export request's body, in arrival order. */
  bodies: Buffer[];
  stop(): Promise<void>;
}

/**
 * A collector that records each OTLP trace export as raw bytes: POST /v1/traces over HTTP, or the
 * TraceService/Export call over gRPC. Span and service names appear verbatim in either encoding.
 */
export async function startOtlpCollector(protocol: string): Promise<OtlpCollector> {
  const bodies: Buffer[] = [];
  if (protocol === 'grpc') {
    const server = new grpc.Server();
    const raw = (b: Buffer) => b;
    server.addService({
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export', requestStream: false, responseStream: false,
        requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw,
      },
    }, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        bodies.push(call.request);
        done(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse: all accepted
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    return { endpoint: `http://127.0.0.1:${port}`, bodies, stop: async () => { server.forceShutdown(); } };
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') bodies.push(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': protocol === 'http/json' ? 'application/json' : 'application/x-protobuf' });
      res.end(protocol === 'http/json' ? '{}' : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { endpoint: `http://127.0.0.1:${port}`, bodies, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
