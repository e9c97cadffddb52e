/**
 * IM_GRPC_TLS_*: mutual TLS on the internal gRPC calls (gateway -> logic, gateway -> router,
 * logic -> router, admin callers -> LogicAdmin). Off by default; on, every gRPC server requires a
 * client certificate signed by the internal CA and every client presents its own certificate and
 * checks the server's against that CA (and its name against the address dialled).
 *
 * Roles: the subject CN of every certificate names what the process is: `gateway`, `logic`,
 * `router` or `admin`, alone or followed by `-` or `.` and anything (`logic-0`,
 * `gateway.eu-west`). With IM_GRPC_TLS_CHECK_ROLES (default on) a server accepts a call only from
 * the roles that may make it (CALLERS) and a client accepts only a server of the role it dials, so
 * a stolen gateway key cannot call LogicAdmin nor pose as logic.
 *
 * Rotation: the three files are read again every IM_GRPC_TLS_RELOAD_INTERVAL. New contents that
 * check out (the certificate matches the key, the CA bundle parses) serve every new connection,
 * on servers and clients alike, without a restart; connections already up keep the certificate
 * they were made with. Contents that do not check out (a half-written file) are logged and the
 * previous ones kept. The rolling procedure is in docs/operations.md.
 */
import { checkServerIdentity, createSecureContext, type PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { checkCertificates, readPem } from './pem';
import { ConfigError, type Settings } from './config';
import type { Logger } from './log';

export const GRPC_ROLES = ['gateway', 'logic', 'router', 'admin'] as const;
export type GrpcRole = (typeof GRPC_ROLES)[number];

/** Which client roles may call each internal service (full service name). Anything else: refused. */
export const CALLERS: Readonly<Record<string, readonly GrpcRole[]>> = {
  'im.internal.v1.Router': ['gateway', 'logic'],
  'im.internal.v1.LogicGateway': ['gateway'],
  'im.internal.v1.LogicAdmin': ['admin'],
  // Reflection is served with LogicAdmin, for grpcurl: the admin's tool.
  'grpc.reflection.v1.ServerReflection': ['admin'],
  'grpc.reflection.v1alpha.ServerReflection': ['admin'],
};

export interface GrpcTlsConfig {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** The contents read (and checked) at start-up; reloads replace them. */
  pem: TlsPem;
  /** IM_GRPC_TLS_RELOAD_INTERVAL: how often the files are read again. */
  reloadIntervalMs: number;
  /** IM_GRPC_TLS_CHECK_ROLES: calls and servers are checked against the certificate CN's role. */
  checkRoles: boolean;
  /** IM_GRPC_TLS_SERVER_NAME: the name server certificates must carry, instead of the host dialled. */
  serverName?: string;
  /** The role this process's own certificate must name (checked when checkRoles); none: any. */
  ownRole?: GrpcRole;
}

export interface TlsPem { ca: Buffer; cert: Buffer; key: Buffer }

/** The role a certificate's subject CN names, or undefined. */
export function roleOf(cert: Pick<PeerCertificate, 'subject'> | undefined): GrpcRole | undefined {
  const cn = cert?.subject?.CN as string | string[] | undefined;
  const name = Array.isArray(cn) ? cn[0] : cn;
  const m = name === undefined ? null : /^([a-z]+)(?:$|[-.])/.exec(name);
  return m && (GRPC_ROLES as readonly string[]).includes(m[1]) ? m[1] as GrpcRole : undefined;
}

/**
 * Reads and checks the three files: the CA bundle and the certificate parse, the key is the
 * certificate's, and (with roles checked) the certificate's CN names `ownRole`. Errors are
 * ConfigErrors naming the setting.
 */
export function readTlsFiles(c: Pick<GrpcTlsConfig, 'caFile' | 'certFile' | 'keyFile' | 'checkRoles' | 'ownRole'>): TlsPem {
  const ca = readPem('IM_GRPC_TLS_CA', c.caFile);
  checkCertificates('IM_GRPC_TLS_CA', c.caFile, ca);
  const cert = readPem('IM_GRPC_TLS_CERT', c.certFile);
  checkCertificates('IM_GRPC_TLS_CERT', c.certFile, cert);
  const key = readPem('IM_GRPC_TLS_KEY', c.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError('IM_GRPC_TLS_KEY', `${c.keyFile} is not the PEM private key of ${c.certFile}: ${(err as Error).message}`);
  }
  if (c.checkRoles && c.ownRole !== undefined) {
    const x509 = new X509Certificate(cert);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1];
    if (roleOf({ subject: { CN: cn } } as PeerCertificate) !== c.ownRole) {
      throw new ConfigError('IM_GRPC_TLS_CERT', `${c.certFile} has CN "${cn ?? ''}"; a ${c.ownRole} certificate's CN must be `
        + `"${c.ownRole}" or start with "${c.ownRole}-" or "${c.ownRole}." (or set IM_GRPC_TLS_CHECK_ROLES=false)`);
    }
  }
  return { ca: Buffer.from(ca), cert: Buffer.from(cert), key: Buffer.from(key) };
}

/**
 * undefined when IM_GRPC_TLS_CA, _CERT and _KEY are all unset (plaintext gRPC); only some of them,
 * or the other IM_GRPC_TLS_* settings without them, are refused.
 */
export function loadGrpcTls(s: Settings, ownRole?: GrpcRole): GrpcTlsConfig | undefined {
  const files = {
    IM_GRPC_TLS_CA: s.raw('IM_GRPC_TLS_CA', 'grpc-tls-ca'),
    IM_GRPC_TLS_CERT: s.raw('IM_GRPC_TLS_CERT', 'grpc-tls-cert'),
    IM_GRPC_TLS_KEY: s.raw('IM_GRPC_TLS_KEY', 'grpc-tls-key'),
  };
  const extras = {
    IM_GRPC_TLS_RELOAD_INTERVAL: s.raw('IM_GRPC_TLS_RELOAD_INTERVAL', 'grpc-tls-reload-interval'),
    IM_GRPC_TLS_CHECK_ROLES: s.raw('IM_GRPC_TLS_CHECK_ROLES', 'grpc-tls-check-roles'),
    IM_GRPC_TLS_SERVER_NAME: s.raw('IM_GRPC_TLS_SERVER_NAME', 'grpc-tls-server-name'),
  };
  const reloadIntervalMs = s.durationMs('IM_GRPC_TLS_RELOAD_INTERVAL', 60_000, { min: 100, flag: 'grpc-tls-reload-interval' });
  const checkRoles = s.bool('IM_GRPC_TLS_CHECK_ROLES', true, 'grpc-tls-check-roles');
  const serverName = extras.IM_GRPC_TLS_SERVER_NAME;
  const missing = Object.entries(files).filter(([, v]) => v === undefined).map(([k]) => k);
  if (missing.length === 3) {
    const stray = Object.entries(extras).find(([, v]) => v !== undefined)?.[0];
    if (stray) throw new ConfigError(stray, 'set IM_GRPC_TLS_CA, IM_GRPC_TLS_CERT and IM_GRPC_TLS_KEY too (without them internal gRPC is plaintext)');
    return undefined;
  }
  if (missing.length > 0) {
    throw new ConfigError(missing[0], 'IM_GRPC_TLS_CA, IM_GRPC_TLS_CERT and IM_GRPC_TLS_KEY go together (mutual TLS needs all three)');
  }
  const c = {
    caFile: files.IM_GRPC_TLS_CA!, certFile: files.IM_GRPC_TLS_CERT!, keyFile: files.IM_GRPC_TLS_KEY!,
    reloadIntervalMs, checkRoles, ownRole, ...(serverName === undefined ? {} : { serverName }),
  };
  return { ...c, pem: readTlsFiles(c) };
}

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/**
 * The three files as a grpc-js certificate provider: what was read at start-up at once, then
 * every reloadIntervalMs what changed and checks out. Polls only while some server or channel
 * listens.
 */
class PemFilesProvider implements grpc.experimental.CertificateProvider {
  private pem: TlsPem;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | undefined;
  private lastError = '';

  constructor(private readonly config: GrpcTlsConfig, private readonly logger: Logger) {
    this.pem = config.pem;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.watch();
    // grpc-js registers its listener before its own watchers: the first update must come later.
    process.nextTick(() => { if (this.caListeners.has(listener)) listener({ caCertificate: this.pem.ca }); });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
    this.unwatch();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.watch();
    process.nextTick(() => { if (this.identityListeners.has(listener)) listener(this.identity()); });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
    this.unwatch();
  }

  private identity() {
    return { certificate: this.pem.cert, privateKey: this.pem.key };
  }

  private watch(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.reload(), this.config.reloadIntervalMs);
    this.timer.unref();
  }

  private unwatch(): void {
    if (this.caListeners.size > 0 || this.identityListeners.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private reload(): void {
    let next: TlsPem;
    try {
      next = readTlsFiles(this.config);
    } catch (err) {
      const message = (err as Error).message;
      // Once per distinct problem: a file being replaced is normal, and the old contents keep serving.
      if (message !== this.lastError) this.logger.warn('internal TLS: new files not used; the previous ones keep serving', { err: message });
      this.lastError = message;
      return;
    }
    this.lastError = '';
    if (next.ca.equals(this.pem.ca) && next.cert.equals(this.pem.cert) && next.key.equals(this.pem.key)) return;
    this.pem = next;
    this.logger.info('internal TLS: certificates reloaded', { cert: describe(next.cert) });
    for (const l of this.caListeners) l({ caCertificate: next.ca });
    for (const l of this.identityListeners) l(this.identity());
  }
}

function describe(cert: Buffer): Record<string, string> {
  const x = new X509Certificate(cert);
  return { subject: x.subject.replace(/\n/g, ', '), notAfter: x.validTo, sha256: x.fingerprint256 };
}

/** One provider per config (per process): servers and channels share its polling. */
const providers = new WeakMap<GrpcTlsConfig, PemFilesProvider>();

function providerFor(config: GrpcTlsConfig, logger: Logger): PemFilesProvider {
  let p = providers.get(config);
  if (!p) providers.set(config, p = new PemFilesProvider(config, logger));
  return p;
}

/** Refuses a call whose client certificate's role may not call the service (see CALLERS). */
function roleInterceptor(logger: Logger): grpc.ServerInterceptor {
  return (method, call) => new grpc.ServerInterceptingCall(call, {
    start: (next) => next({
      onReceiveMetadata: (metadata, nextMetadata) => {
        const service = method.path.slice(1, method.path.lastIndexOf('/'));
        const role = roleOf(call.getAuthContext().sslPeerCertificate);
        if (role !== undefined && CALLERS[service]?.includes(role)) {
          nextMetadata(metadata);
          return;
        }
        logger.warn('internal TLS: call refused for its client certificate', { method: method.path, role: role ?? 'none', peer: call.getPeer() });
        call.sendStatus({
          code: grpc.status.PERMISSION_DENIED,
          details: `a ${role ?? 'certificate without a role in its CN'} may not call ${service} (allowed: ${(CALLERS[service] ?? []).join(', ') || 'none'})`,
          metadata: new grpc.Metadata(),
        });
      },
    }),
  });
}

/** What a gRPC server binds with: plaintext without config; mTLS (and role checks) with it. */
export function grpcServerCredentials(config: GrpcTlsConfig | undefined, logger: Logger): grpc.ServerCredentials {
  if (!config) return grpc.ServerCredentials.createInsecure();
  const provider = providerFor(config, logger);
  // Client certificate required: no certificate, or one the CA did not sign, fails the handshake.
  const creds = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, true);
  return config.checkRoles ? grpc.experimental.createServerCredentialsWithInterceptors(creds, [roleInterceptor(logger)]) : creds;
}

/** Credentials and channel options for a client of a `server`-role service. */
export function grpcChannel(config: GrpcTlsConfig | undefined, server: GrpcRole, logger: Logger): {
  credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions;
} {
  if (!config) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const provider = providerFor(config, logger);
  const verify: grpc.VerifyOptions = config.checkRoles
    ? {
      // Replaces Node's name check (after the chain was verified), so it runs that first.
      checkServerIdentity: (host, cert) => checkServerIdentity(host, cert) ?? (roleOf(cert) === server ? undefined
        : new Error(`internal TLS: the server's certificate (CN ${String(cert.subject?.CN ?? '')}) is not a ${server}'s`)),
    }
    : {};
  return {
    credentials: grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, verify),
    options: config.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': config.serverName },
  };
}

/** "mtls (roles checked)" or "plaintext", for the listening line. */
export function describeGrpcTls(config: GrpcTlsConfig | undefined): string {
  if (!config) return 'plaintext';
  return config.checkRoles ? 'mtls (roles checked)' : 'mtls';
}
