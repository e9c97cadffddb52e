/**
 * Imported first by embedded/main.ts, for its side effect: when tracing is on (off by default in
 * embedded mode; see common/telemetry.ts), gRPC and cassandra-driver must be patched before
 * anything requires them.
 */
import { installInstrumentations } from '../common/telemetry';

installInstrumentations(process.env, { embedded: true });
