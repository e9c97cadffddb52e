// CQL-level readiness probe used by start.sh: succeeds once `SELECT release_version FROM
// system.local` answers (a TCP accept alone can come before the native protocol is ready).
// Usage: node cassandra/wait-cql.js <host> <port> <timeoutSeconds> <pid>
// CQL_TLS=1: the node serves CQL over TLS only (start.sh's CASSANDRA_CLIENT_KEYSTORE); this probe
// then speaks TLS without checking the certificate: it only asks whether the node is up.
// CQL_TLS_CERT / CQL_TLS_KEY: PEM files of a client certificate to present (a node that requires
// client certificates, start.sh's CASSANDRA_CLIENT_TRUSTSTORE).
// Exits 0 when ready, 1 on timeout, 2 when <pid> is gone (the server died while starting).
'use strict';
const cassandra = require('cassandra-driver');

const [host = '127.0.0.1', portArg = '9042', timeoutArg = '180', pidArg = '0'] = process.argv.slice(2);
const deadlineMs = Date.now() + Number(timeoutArg) * 1000;
const pid = Number(pidArg);
const tls = process.env.CQL_TLS === '1';
const fs = require('node:fs');
const clientCert = process.env.CQL_TLS_CERT && process.env.CQL_TLS_KEY
  ? { cert: fs.readFileSync(process.env.CQL_TLS_CERT), key: fs.readFileSync(process.env.CQL_TLS_KEY) }
  : {};

function alive() {
  if (!pid) return true;
  try { process.kill(pid, 0); return true; } catch { return false; }
}

(async () => {
  let lastErr = '';
  while (Date.now() < deadlineMs) {
    if (!alive()) process.exit(2);
    const client = new cassandra.Client({
      contactPoints: [`${host}:${portArg}`],
      localDataCenter: 'datacenter1',
      socketOptions: { connectTimeout: 2000, readTimeout: 5000 },
      ...(tls && { sslOptions: { rejectUnauthorized: false, ...clientCert } }),
    });
    try {
      await client.connect();
      const rs = await client.execute('SELECT release_version FROM system.local');
      console.log(rs.first().release_version);
      await client.shutdown();
      process.exit(0);
    } catch (e) {
      lastErr = e && e.message ? e.message : String(e);
      await client.shutdown().catch(() => {});
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  console.error(`not answering CQL: ${lastErr}`);
  process.exit(1);
})();
