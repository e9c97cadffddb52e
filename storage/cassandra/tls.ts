/**
 * IM_CASSANDRA_TLS*: the Cassandra driver's TLS settings, read and checked at start-up so that a
 * missing or unreadable PEM file stops the process naming the setting (exit 2), not at the first
 * connection. Off by default; on, the server's certificate chain is always verified.
 */
import { createSecureContext } from 'node:tls';
import { ConfigError, type Settings } from '../../common/config';
import { checkCertificates, readPem } from '../../common/pem';

export interface CassandraTlsConfig {
  /** PEM of the CA(s) to trust (IM_CASSANDRA_TLS_CA); absent: Node's bundled CAs. */
  ca?: string;
  /** Client certificate and key for require_client_auth (IM_CASSANDRA_TLS_CERT / _KEY), PEM. */
  cert?: string;
  key?: string;
  /** Check that the certificate names the contact point (IM_CASSANDRA_TLS_VERIFY_HOSTNAME). Default true. */
  verifyHostname: boolean;
}

/** undefined when IM_CASSANDRA_TLS is off; the other TLS settings without it are refused. */
export function loadCassandraTls(s: Settings): CassandraTlsConfig | undefined {
  const caFile = s.raw('IM_CASSANDRA_TLS_CA', 'cassandra-tls-ca');
  const certFile = s.raw('IM_CASSANDRA_TLS_CERT', 'cassandra-tls-cert');
  const keyFile = s.raw('IM_CASSANDRA_TLS_KEY', 'cassandra-tls-key');
  const verifyHostname = s.bool('IM_CASSANDRA_TLS_VERIFY_HOSTNAME', true, 'cassandra-tls-verify-hostname');
  if (!s.bool('IM_CASSANDRA_TLS', false, 'cassandra-tls')) {
    const stray = [['IM_CASSANDRA_TLS_CA', caFile], ['IM_CASSANDRA_TLS_CERT', certFile], ['IM_CASSANDRA_TLS_KEY', keyFile],
      ['IM_CASSANDRA_TLS_VERIFY_HOSTNAME', verifyHostname ? undefined : 'false']].find(([, v]) => v !== undefined);
    if (stray) throw new ConfigError(stray[0]!, 'set IM_CASSANDRA_TLS=true too (without it the connection is plaintext)');
    return undefined;
  }
  const out: CassandraTlsConfig = { verifyHostname };
  if (caFile !== undefined) {
    out.ca = readPem('IM_CASSANDRA_TLS_CA', caFile);
    checkCertificates('IM_CASSANDRA_TLS_CA', caFile, out.ca);
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(certFile === undefined ? 'IM_CASSANDRA_TLS_CERT' : 'IM_CASSANDRA_TLS_KEY',
      'IM_CASSANDRA_TLS_CERT and IM_CASSANDRA_TLS_KEY go together');
  }
  if (certFile !== undefined && keyFile !== undefined) {
    out.cert = readPem('IM_CASSANDRA_TLS_CERT', certFile);
    checkCertificates('IM_CASSANDRA_TLS_CERT', certFile, out.cert);
    out.key = readPem('IM_CASSANDRA_TLS_KEY', keyFile);
    try {
      createSecureContext({ cert: out.cert, key: out.key });
    } catch (err) {
      throw new ConfigError('IM_CASSANDRA_TLS_KEY', `${keyFile} is not the PEM private key of ${certFile}: ${(err as Error).message}`);
    }
  }
  return out;
}
