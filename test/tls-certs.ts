/**
 * Throwaway PKI for TLS tests, made with openssl: a CA, a server certificate for 127.0.0.1 /
 * localhost signed by it (PEM and a PKCS12 keystore, which Cassandra reads), one signed by it that
 * names neither (for hostname checks), a client certificate, and a second, unrelated CA that must
 * not be trusted, with a client certificate of its own. makeClientTruststore() adds the CA as a
 * Java PKCS12 truststore (a Cassandra node that requires client certificates reads it).
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as fs from 'node:fs';

export interface TestPki {
  dir: string;
  caPem: string;
  otherCaPem: string;
  serverKeystore: string;
  /** CA-signed, but for cassandra.invalid only: the chain verifies, the name of 127.0.0.1 does not. */
  otherNameCert: string;
  otherNameKey: string;
  keystorePassword: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by the other CA: a node trusting only `ca` refuses it. */
  otherClientCert: string;
  otherClientKey: string;
}

export function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** openssl's -newkey arguments: RSA-2048 (the default) or ECDSA P-256. */
export const RSA_2048 = ['-newkey', 'rsa:2048'];
export const EC_P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];

/** Extensions of a server certificate for 127.0.0.1 / localhost. */
export const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';

export function ca(dir: string, name: string, newKey = RSA_2048): void {
  openssl(dir, ['req', '-x509', ...newKey, '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-keyout', `${name}.key`, '-out', `${name}.pem`]);
}

export function signed(dir: string, name: string, caName: string, ext: string, newKey = RSA_2048): void {
  openssl(dir, ['req', ...newKey, '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial',
    '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
}

/**
 * One more server certificate for 127.0.0.1 / localhost signed by the PKI's CA (a renewal, for
 * reload tests): `${name}.pem` and `${name}.key` in the PKI's dir.
 */
export function signServerCert(pki: TestPki, name: string): { cert: string; key: string } {
  signed(pki.dir, name, 'ca', SERVER_EXT);
  return { cert: path.join(pki.dir, `${name}.pem`), key: path.join(pki.dir, `${name}.key`) };
}

/** Writes everything into dir (which must exist). */
export function makeTestPki(dir: string): TestPki {
  ca(dir, 'ca');
  ca(dir, 'other-ca');
  signed(dir, 'server', 'ca', SERVER_EXT);
  signed(dir, 'other-name', 'ca', 'subjectAltName=DNS:cassandra.invalid\nextendedKeyUsage=serverAuth\n');
  signed(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
  signed(dir, 'other-client', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  const keystorePassword = 'test-keystore';
  openssl(dir, ['pkcs12', '-export', '-in', 'server.pem', '-inkey', 'server.key', '-name', 'cassandra',
    '-out', 'server.p12', '-passout', `pass:${keystorePassword}`]);
  const p = (f: string) => path.join(dir, f);
  return {
    dir, caPem: p('ca.pem'), otherCaPem: p('other-ca.pem'), serverKeystore: p('server.p12'), keystorePassword,
    otherNameCert: p('other-name.pem'), otherNameKey: p('other-name.key'),
    clientCert: p('client.pem'), clientKey: p('client.key'),
    otherClientCert: p('other-client.pem'), otherClientKey: p('other-client.key'),
  };
}

/**
 * The PKI's CA as a PKCS12 truststore (`ca-truststore.p12`, password pki.keystorePassword), made
 * with the keytool of the JDK cassandra/start.sh runs: OpenSSL 3.0 cannot mark a certificate as
 * trusted for Java, and Java ignores a PKCS12 certificate without that mark.
 */
export function makeClientTruststore(pki: TestPki): string {
  const startSh = path.join(__dirname, '..', '..', 'cassandra', 'start.sh');
  const java = execFileSync('bash', [startSh, '--print-java'], { encoding: 'utf8' }).trim();
  const store = path.join(pki.dir, 'ca-truststore.p12');
  execFileSync(path.join(path.dirname(java), 'keytool'), ['-importcert', '-noprompt', '-storetype', 'PKCS12', '-alias', 'im-test-ca',
    '-file', pki.caPem, '-keystore', store, '-storepass', pki.keystorePassword], { stdio: ['ignore', 'ignore', 'pipe'] });
  return store;
}
