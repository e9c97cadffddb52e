/** The SDK's public value types and events. */
import { Code } from '../common/errors';
import { utf8Bytes } from '../proto/binary';
import { AuthOk, Message, textContent } from '../proto/wire';
import { ImClientError } from './errors';

export type ImClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Message content: plain text, or typed bytes (a string content is sent as UTF-8). */
export type MessageContent = string | { contentType: string; content: Uint8Array | string };

export interface SendOptions { clientMsgId?: string }

export interface HistoryQuery { with?: string; groupId?: string; beforeConvSeq?: number; limit?: number }

/** Payload of 'disconnected'. reconnect: whether this client is now reconnecting by itself. */
export interface DisconnectedEvent { code: number; reason: string; reconnect: boolean }

export interface ReconnectingEvent { attempt: number; delayMs: number }

export interface ImClientEvents {
  message: [Message];
  connected: [AuthOk];
  disconnected: [DisconnectedEvent];
  reconnecting: [ReconnectingEvent];
  /** The inbox caught up with the server (after a (re)connect or a gap). */
  synced: [{ lastSeq: number }];
  error: [Error];
}

export function toSendContent(content: MessageContent): { contentType: string; content: Uint8Array } {
  if (typeof content === 'string') return textContent(content);
  if (!content || typeof content.contentType !== 'string') {
    throw new ImClientError(Code.BAD_REQUEST, 'content must be a string or {contentType, content}', { retryable: false });
  }
  const bytes = typeof content.content === 'string' ? utf8Bytes(content.content) : content.content;
  return { contentType: content.contentType || 'text/plain', content: bytes };
}

