/**
 * Input checks shared by Store implementations: bad arguments fail with BadRequestError naming
 * the field, before anything is written (so one bad append in a batch never touches the others).
 */
import { BadRequestError, GroupFullError } from '../common/errors';
import type { AppendInput, GroupInfo } from './store';

export function validateAppend(input: AppendInput): void {
  for (const key of ['msgId', 'convId', 'from', 'clientMsgId'] as const) {
    if (typeof input[key] !== 'string' || input[key] === '') throw new BadRequestError(`append: ${key} must be a non-empty string`);
  }
  for (const key of ['to', 'groupId', 'contentType'] as const) {
    if (typeof input[key] !== 'string') throw new BadRequestError(`append: ${key} must be a string`);
  }
  if (!(input.content instanceof Uint8Array)) throw new BadRequestError('append: content must be a Uint8Array');
  if (!Number.isSafeInteger(input.sentAtMs) || input.sentAtMs < 0) {
    throw new BadRequestError(`append: sentAtMs must be a non-negative integer, got ${input.sentAtMs}`);
  }
  if (!Number.isSafeInteger(input.dedupWindowMs) || input.dedupWindowMs < 0) {
    throw new BadRequestError(`append: dedupWindowMs must be a non-negative integer, got ${input.dedupWindowMs}`);
  }
  validateUids('recipients', input.recipients);
  if (new Set(input.recipients).size !== input.recipients.length) {
    throw new BadRequestError('append: recipients contain duplicates');
  }
  if (!input.recipients.includes(input.from)) throw new BadRequestError('append: recipients must include the sender');
}

export function validateUids(field: string, uids: unknown): asserts uids is string[] {
  if (!Array.isArray(uids) || uids.some((u) => typeof u !== 'string' || u === '')) {
    throw new BadRequestError(`${field} must be an array of non-empty strings`);
  }
}

/** A seq or convSeq bound: a non-negative integer. */
export function validateSeq(field: string, seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new BadRequestError(`${field} must be a non-negative integer, got ${seq}`);
}

export function validateLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new BadRequestError(`limit must be a positive integer, got ${limit}`);
  return limit;
}

export function validateMaxMembers(maxMembers: number): void {
  if (!Number.isSafeInteger(maxMembers) || maxMembers < 1) {
    throw new BadRequestError(`maxMembers must be a positive integer, got ${maxMembers}`);
  }
}

/** Checks a group about to be created; returns its members, owner first, without duplicates. */
export function validateNewGroup(group: GroupInfo, maxMembers: number): string[] {
  validateMaxMembers(maxMembers);
  validateUids('members', group.members);
  if (!group.groupId || !group.owner) throw new BadRequestError('group needs a groupId and an owner');
  const members = [...new Set([group.owner, ...group.members])];
  if (members.length > maxMembers) {
    throw new GroupFullError(`group ${group.groupId} would have ${members.length} members, limit ${maxMembers}`);
  }
  return members;
}
