/**
 * JWT HS256: the token a client presents in Auth. Small on purpose: one algorithm, a set of keys
 * told apart by the header's `kid` (so the signing key can be rotated), optional aud/iss checks.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { TokenExpiredError, TokenInvalidError } from './errors';
import { isValidUid } from './ids';

export interface TokenClaims {
  sub: string;   // uid
  exp: number;   // seconds since epoch
  iat: number;
}

/**
 * Time claims (exp, iat, nbf) must be integer seconds in 0..MAX_TIME_CLAIM_SECONDS (the end of
 * year 9999): `1e999` parses as Infinity and would otherwise be a token that never expires.
 */
export const MAX_TIME_CLAIM_SECONDS = 253_402_300_799;

function timeClaim(claims: Record<string, unknown>, name: 'exp' | 'iat' | 'nbf'): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TIME_CLAIM_SECONDS) {
    throw new TokenInvalidError(`token ${name} must be an integer number of seconds in 0..${MAX_TIME_CLAIM_SECONDS}`);
  }
  return v;
}

/** Clock skew allowed for nbf between the server that minted a token and the gateway. */
const NBF_LEEWAY_MS = 60_000;

/** What a gateway accepts tokens with (IM_AUTH_SECRET, IM_AUTH_KEYS, IM_AUTH_AUDIENCE, IM_AUTH_ISSUER). */
export interface TokenAuth {
  /** The key of tokens without `kid`; unset, such tokens are refused. */
  secret?: string;
  /** The keys of tokens with a `kid`, by kid; a kid not here is refused. */
  keys?: ReadonlyMap<string, string>;
  /** Set: `aud` (a string or an array of strings) must contain it. */
  audience?: string;
  /** Set: `iss` must equal it. */
  issuer?: string;
}

/** What signToken puts in the header (`kid`) and claims (`aud`, `iss`) beyond sub/iat/exp. */
export interface SignOptions {
  kid?: string;
  audience?: string;
  issuer?: string;
}

const b64url = (buf: Buffer | string) => Buffer.from(buf).toString('base64url');
const hs256 = (secret: string, signed: string) => createHmac('sha256', secret).update(signed).digest();

export function signToken(secret: string, uid: string, ttlSeconds: number, nowMs = Date.now(), opts: SignOptions = {}): string {
  const iat = Math.floor(nowMs / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', ...(opts.kid !== undefined && { kid: opts.kid }) }));
  const payload = b64url(JSON.stringify({
    sub: uid, iat, exp: iat + ttlSeconds,
    ...(opts.audience !== undefined && { aud: opts.audience }),
    ...(opts.issuer !== undefined && { iss: opts.issuer }),
  }));
  return `${header}.${payload}.${hs256(secret, `${header}.${payload}`).toString('base64url')}`;
}

/** The key a token's `kid` names: the default key when it has none. */
function keyFor(auth: TokenAuth, kid: unknown): string {
  if (kid === undefined) {
    if (auth.secret === undefined) throw new TokenInvalidError('token has no kid');
    return auth.secret;
  }
  const key = typeof kid === 'string' ? auth.keys?.get(kid) : undefined;
  if (key === undefined) throw new TokenInvalidError('token kid is not a known key');
  return key;
}

/**
 * Returns the claims or throws TokenInvalidError / TokenExpiredError. The HMAC key is the UTF-8
 * bytes of the secret as given (docs/protocol.md, Tokens): never hex- or base64-decoded.
 */
export function verifyToken(auth: TokenAuth, token: string, nowMs = Date.now()): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenInvalidError('token is not a JWT');
  const [h, p, s] = parts;
  let header: { alg?: string; kid?: unknown };
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new TokenInvalidError('token is not valid JSON', { cause });
  }
  if (header === null || typeof header !== 'object') throw new TokenInvalidError('token header is not a JSON object');
  if (header.alg !== 'HS256') throw new TokenInvalidError('token algorithm must be HS256');
  const want = hs256(keyFor(auth, header.kid), `${h}.${p}`);
  const got = Buffer.from(s, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new TokenInvalidError('token signature mismatch');
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new TokenInvalidError('token claims are not a JSON object');
  if (typeof claims.sub !== 'string' || !isValidUid(claims.sub)) throw new TokenInvalidError('token has no valid sub');
  const exp = timeClaim(claims, 'exp');
  const iat = timeClaim(claims, 'iat');
  const nbf = timeClaim(claims, 'nbf');
  if (exp === undefined) throw new TokenInvalidError('token has no exp');
  if (nbf !== undefined && nbf * 1000 > nowMs + NBF_LEEWAY_MS) throw new TokenInvalidError('token not valid yet (nbf)');
  if (auth.audience !== undefined && !(claims.aud === auth.audience || (Array.isArray(claims.aud) && claims.aud.includes(auth.audience)))) {
    throw new TokenInvalidError('token aud does not name this service');
  }
  if (auth.issuer !== undefined && claims.iss !== auth.issuer) throw new TokenInvalidError('token iss is not the configured issuer');
  if (exp * 1000 <= nowMs) throw new TokenExpiredError('token expired');
  return { sub: claims.sub, exp, iat: iat ?? 0 };
}
