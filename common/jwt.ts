/** JWT HS256: the token a client presents in Auth. Small on purpose: one algorithm, no options. */
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

const b64url = (buf: Buffer | string) => Buffer.from(buf).toString('base64url');
const HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

export function signToken(secret: string, uid: string, ttlSeconds: number, nowMs = Date.now()): string {
  const iat = Math.floor(nowMs / 1000);
  const payload = b64url(JSON.stringify({ sub: uid, iat, exp: iat + ttlSeconds }));
  const sig = createHmac('sha256', secret).update(`${HEADER}.${payload}`).digest('base64url');
  return `${HEADER}.${payload}.${sig}`;
}

/**
 * Returns the claims or throws TokenInvalidError / TokenExpiredError. The HMAC key is the UTF-8
 * bytes of `secret` as given (docs/protocol.md, Tokens): never hex- or base64-decoded.
 */
export function verifyToken(secret: string, token: string, nowMs = Date.now()): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenInvalidError('token is not a JWT');
  const [h, p, s] = parts;
  let header: { alg?: string };
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new TokenInvalidError('token is not valid JSON', { cause });
  }
  if (header?.alg !== 'HS256') throw new TokenInvalidError('token algorithm must be HS256');
  const want = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const got = Buffer.from(s, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new TokenInvalidError('token signature mismatch');
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new TokenInvalidError('token claims are not a JSON object');
  if (typeof claims.sub !== 'string' || !isValidUid(claims.sub)) throw new TokenInvalidError('token has no valid sub');
  const exp = timeClaim(claims, 'exp');
  const iat = timeClaim(claims, 'iat');
  const nbf = timeClaim(claims, 'nbf');
  if (exp === undefined) throw new TokenInvalidError('token has no exp');
  if (nbf !== undefined && nbf * 1000 > nowMs + NBF_LEEWAY_MS) throw new TokenInvalidError('token not valid yet (nbf)');
  if (exp * 1000 <= nowMs) throw new TokenExpiredError('token expired');
  return { sub: claims.sub, exp, iat: iat ?? 0 };
}
