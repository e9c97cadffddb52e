/** JWT HS256: the token a client presents in Auth. Small on purpose: one algorithm, no options. */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { TokenExpiredError, TokenInvalidError } from './errors';
import { isValidUid } from './ids';

export interface TokenClaims {
  sub: string;   // uid
  exp: number;   // seconds since epoch
  iat: number;
}

const b64url = (buf: Buffer | string) => Buffer.from(buf).toString('base64url');
const HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

export function signToken(secret: string, uid: string, ttlSeconds: number, nowMs = Date.now()): string {
  const iat = Math.floor(nowMs / 1000);
  const payload = b64url(JSON.stringify({ sub: uid, iat, exp: iat + ttlSeconds }));
  const sig = createHmac('sha256', secret).update(`${HEADER}.${payload}`).digest('base64url');
  return `${HEADER}.${payload}.${sig}`;
}

/** Returns the claims or throws TokenInvalidError / TokenExpiredError. */
export function verifyToken(secret: string, token: string, nowMs = Date.now()): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenInvalidError('token is not a JWT');
  const [h, p, s] = parts;
  let header: { alg?: string };
  let claims: Partial<TokenClaims>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new TokenInvalidError('token is not valid JSON', { cause });
  }
  if (header.alg !== 'HS256') throw new TokenInvalidError('token algorithm must be HS256');
  const want = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const got = Buffer.from(s, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new TokenInvalidError('token signature mismatch');
  if (typeof claims.sub !== 'string' || !isValidUid(claims.sub)) throw new TokenInvalidError('token has no valid sub');
  if (typeof claims.exp !== 'number') throw new TokenInvalidError('token has no exp');
  if (claims.exp * 1000 <= nowMs) throw new TokenExpiredError('token expired');
  return { sub: claims.sub, exp: claims.exp, iat: claims.iat ?? 0 };
}
