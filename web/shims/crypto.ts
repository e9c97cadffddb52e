/**
 * Browser stand-in for node:crypto: randomUUID and randomBytes from the Web Crypto API (secure
 * contexts: the page is served over loopback http or https). Only for the web page's bundle.
 */
import { Buffer } from './buffer';

export function randomUUID(): string {
  return globalThis.crypto.randomUUID();
}

export function randomBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

export function createHmac(): never {
  throw new Error('createHmac is not available in the browser bundle');
}

export function timingSafeEqual(): never {
  throw new Error('timingSafeEqual is not available in the browser bundle');
}
