/**
 * The storage contract. Two implementations pass one contract suite (storage/contract.test-support.ts):
 * the embedded SQLite store (default) and Cassandra (distributed mode).
 */

export interface StoredMessage {
  msgId: string;
  convId: string;        // "p:<a>:<b>" or "g:<groupId>"
  from: string;
  to: string;            // peer uid for 1:1, '' for groups
  groupId: string;       // '' for 1:1
  clientMsgId: string;
  contentType: string;
  content: Uint8Array;
  sentAtMs: number;
  convSeq: number;       // position in the conversation history, strictly increasing per conv
}

/** A message as it sits in one user's inbox timeline. */
export interface InboxEntry extends StoredMessage {
  seq: number;           // strictly increasing per user, starting at 1
}

export interface AppendInput {
  /** Used only when the message is new; a duplicate returns the original's id. */
  msgId: string;
  convId: string;
  from: string;
  to: string;
  groupId: string;
  clientMsgId: string;
  contentType: string;
  content: Uint8Array;
  sentAtMs: number;
  /** Every uid whose inbox gets the message, the sender included; no duplicates. */
  recipients: string[];
  /** How long (sender, clientMsgId) keeps answering with this message. */
  dedupWindowMs: number;
}

export interface AppendResult {
  message: StoredMessage;
  /** The sender's inbox seq for the message (the original's on a duplicate). */
  senderSeq: number;
  /**
   * uid -> inbox seq of every recipient. Empty on a duplicate of a finished send; full on a
   * duplicate that finished an earlier attempt which died part way (push again: clients drop
   * seqs they already have).
   */
  seqs: Map<string, number>;
  /** True when (from, clientMsgId) was already accepted within the window: nothing was written. */
  duplicate: boolean;
}

export interface GroupInfo {
  groupId: string;
  name: string;
  owner: string;
  members: string[];     // owner included, in join order
  createdAtMs: number;
}

export interface UnreadInfo {
  convId: string;
  count: number;         // inbox entries in conv with seq > readSeq and from != uid
  readSeq: number;
  lastSeq: number;       // newest inbox seq in the conv for this user
}

export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

export interface Store {
  /**
   * Atomically: dedup on (from, clientMsgId) within the window; else store the message in its
   * conversation history and append it to each recipient's inbox with that user's next seq.
   * Concurrent calls with the same (from, clientMsgId) yield one message.
   */
  appendMessage(input: AppendInput): Promise<AppendResult>;

  /** Inbox entries with seq > afterSeq, ascending, at most `limit`. */
  sync(uid: string, afterSeq: number, limit: number): Promise<Page<InboxEntry>>;

  /** The user's newest inbox seq (0 when empty). */
  maxSeq(uid: string): Promise<number>;

  /** Conversation messages with convSeq < beforeConvSeq (0 = newest), descending, at most `limit`. */
  history(convId: string, beforeConvSeq: number, limit: number): Promise<Page<StoredMessage>>;

  /** Creates a group with `members` (owner first, deduplicated). Throws GroupFullError above maxMembers. */
  createGroup(group: GroupInfo, maxMembers: number): Promise<GroupInfo>;

  getGroup(groupId: string): Promise<GroupInfo | undefined>;

  /**
   * Adds uids not yet members, atomically against concurrent adds: throws GroupFullError (and
   * adds nothing) when the result would exceed maxMembers; GroupNotFoundError when absent.
   */
  addMembers(groupId: string, uids: string[], maxMembers: number): Promise<GroupInfo>;

  /** Removes uids; when the owner leaves, `newOwner` (a remaining member) takes over. */
  removeMembers(groupId: string, uids: string[], newOwner?: string): Promise<GroupInfo>;

  /** Moves uid's read cursor in convId forward to seq (never back). */
  setReadCursor(uid: string, convId: string, seq: number): Promise<UnreadInfo>;

  /** Unread counts for the given conversations, or for every conversation with unread messages. */
  unread(uid: string, convIds?: string[]): Promise<UnreadInfo[]>;

  close(): Promise<void>;
}
