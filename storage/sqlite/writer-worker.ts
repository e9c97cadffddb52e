/**
 * Writer thread body of the SQLite store (storage/sqlite/writer-client.ts starts it): its own
 * connection to the store's file, running every write batch the store posts, one at a time in
 * the order posted, and answering each after its transactions committed. When the checkpoint
 * worker says the log is due to start over (RESTART_DUE on checkpointPort), it copies the rest of
 * the log itself between two batches (storage/sqlite/checkpoint.ts). 'close' writes the queued
 * summaries, closes the connection and ends the thread.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { RESTART_DONE, RESTART_DUE, RestartCheckpoint } from './checkpoint';
import { openConnection, WriterEngine, type ConnectionOptions, type WriteBatch, type WriterOptions } from './writer';
import { nameThisThread } from '../../common/thread-name';

nameThisThread('sqlite-write');

interface Data { path: string; connection: ConnectionOptions; writer: WriterOptions; checkpointPort: MessagePort }

const { path, connection, writer, checkpointPort } = workerData as Data;
const db = openConnection(path, connection);
const engine = new WriterEngine(db, writer, new RestartCheckpoint(db));

function fromCheckpointWorker(m: unknown): void {
  if (m !== RESTART_DUE) return;
  engine.restartCheckpoint();
  checkpointPort.postMessage(RESTART_DONE);
}

// Heard when the writer is idle. Under load the batches keep parentPort's queue from ever being
// empty, and Node drains a port's queue (up to 1,000 messages) before it looks at another port:
// this listener then heard RESTART_DUE seconds late, and the log grew past 1M frames. So the
// writer also looks itself after every batch (receiveMessageOnPort).
checkpointPort.on('message', fromCheckpointWorker);
// The thread ends with its batches: the checkpoint worker's port must not keep it alive.
checkpointPort.unref();

parentPort!.on('message', (m: WriteBatch | 'close') => {
  if (m === 'close') {
    try {
      engine.flushAll();
    } catch {
      // What is not indexed stays in the message log: the store keeps it for the next open's replay.
    }
    checkpointPort.close();
    db.close();
    parentPort!.close();
    return;
  }
  // A throw here (only the fault drill, or a bug) ends the thread: the store fails what was pending.
  const reply = engine.handle(m);
  parentPort!.postMessage(reply, [reply.contents]);
  for (let r = receiveMessageOnPort(checkpointPort); r; r = receiveMessageOnPort(checkpointPort)) fromCheckpointWorker(r.message);
});
