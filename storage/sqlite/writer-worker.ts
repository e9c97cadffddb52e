/**
 * Writer thread body of the SQLite store (storage/sqlite/writer-client.ts starts it): its own
 * connection to the store's file, running every write batch the store posts, one at a time in
 * the order posted, and answering each after its transactions committed. 'close' writes the
 * queued summaries, closes the connection and ends the thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openConnection, WriterEngine, type ConnectionOptions, type WriteBatch, type WriterOptions } from './writer';

interface Data { path: string; connection: ConnectionOptions; writer: WriterOptions }

const { path, connection, writer } = workerData as Data;
const db = openConnection(path, connection);
const engine = new WriterEngine(db, writer);

parentPort!.on('message', (m: WriteBatch | 'close') => {
  if (m === 'close') {
    engine.flushAll();
    db.close();
    parentPort!.close();
    return;
  }
  // A throw here (only the fault drill, or a bug) ends the thread: the store fails what was pending.
  const reply = engine.handle(m);
  parentPort!.postMessage(reply, [reply.contents]);
});
