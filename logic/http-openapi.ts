/**
 * The OpenAPI 3.1 description of the client HTTP API (logic/http-api.ts), served at
 * GET /v1/openapi.json. The source of truth for the JSON shapes: logic/http-api.test.ts checks it
 * with an OpenAPI validator and checks every reply of a running server against its schemas.
 */

const int = (description: string) => ({ type: 'integer', minimum: 0, description });
const str = (description: string) => ({ type: 'string', description });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const obj = (properties: Record<string, unknown>, required: string[] = Object.keys(properties)) => ({
  type: 'object', additionalProperties: false, properties, required,
});

const errorResponse = (description: string) => ({
  description, content: { 'application/json': { schema: ref('Error') } },
});
const ok = (schema: string, description = 'OK') => ({
  description, content: { 'application/json': { schema: ref(schema) } },
});
const jsonBody = (schema: string) => ({
  required: true, content: { 'application/json': { schema: ref(schema) } },
});

/** The errors every authenticated operation can answer; others are listed per operation. */
const COMMON_ERRORS = {
  400: errorResponse('2000 BAD_REQUEST: a malformed query, body or field'),
  401: errorResponse('1003 NOT_AUTHENTICATED (no bearer token), 1004 TOKEN_INVALID, 1005 TOKEN_EXPIRED'),
  429: errorResponse('1007 RATE_LIMITED: wait Retry-After seconds'),
  default: errorResponse('Any other error: 404/405 1002, 413 1001/2005, 415 2000, 500 1199, 503 1100/1102, 504 1101'),
};
const GROUP_ERRORS = {
  403: errorResponse('2002 NOT_GROUP_MEMBER, or 2004 NOT_GROUP_OWNER'),
  404: errorResponse('2001 GROUP_NOT_FOUND'),
};

const groupIdParam = { name: 'groupId', in: 'path', required: true, schema: { type: 'string', minLength: 1 } };
const queryInt = (name: string, description: string) => ({ name, in: 'query', required: false, schema: int(description) });
const queryStr = (name: string, description: string) => ({ name, in: 'query', required: false, schema: str(description) });
const queryList = (name: string, description: string) => ({
  name, in: 'query', required: false, explode: true, style: 'form', schema: { type: 'array', items: { type: 'string' } }, description,
});

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'IM client HTTP API',
    version: '1.0.0',
    description: 'The business operations of the long connection (docs/protocol.md) as short JSON requests. '
      + 'See docs/http-api.md for authentication, errors, idempotency and rate limits.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  security: [{ bearer: [] }],
  paths: {
    '/v1/messages': {
      post: {
        operationId: 'send',
        summary: 'Send a message to a user (to) or a group (groupId); pushed to the recipients\' connections',
        requestBody: jsonBody('SendRequest'),
        responses: {
          200: ok('SendResponse', 'Stored (or, for a retry of the same clientMsgId, the first result with duplicate: true)'),
          ...COMMON_ERRORS, ...GROUP_ERRORS,
          409: errorResponse('2006 IDEMPOTENCY_CONFLICT: clientMsgId already used for other content'),
          413: errorResponse('1001 the body is above the limit, or 2005 CONTENT_TOO_LARGE'),
        },
      },
    },
    '/v1/sync': {
      get: {
        operationId: 'sync',
        summary: 'The caller\'s inbox after fromSeq, ascending seq',
        parameters: [queryInt('fromSeq', 'return messages with seq > fromSeq (default 0)'), queryInt('limit', 'default 100, at most 500')],
        responses: { 200: ok('SyncResponse'), ...COMMON_ERRORS },
      },
    },
    '/v1/history': {
      get: {
        operationId: 'history',
        summary: 'A conversation\'s history, newest first: with a peer (with) or a group (groupId)',
        parameters: [
          queryStr('with', 'peer uid (1:1)'), queryStr('groupId', 'group id'),
          queryInt('beforeConvSeq', '0 (default) = from the newest'), queryInt('limit', 'default 50, at most 200'),
        ],
        responses: { 200: ok('HistoryResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS },
      },
    },
    '/v1/read': {
      post: {
        operationId: 'read',
        summary: 'Move the caller\'s read cursor of a conversation (never backwards)',
        requestBody: jsonBody('ReadRequest'),
        responses: { 200: ok('ReadResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS },
      },
    },
    '/v1/unread': {
      get: {
        operationId: 'unread',
        summary: 'Unread counts of the given conversations, or of every conversation with unread messages',
        parameters: [queryList('convId', 'conversation ids (repeat the parameter); none = all with unread messages')],
        responses: { 200: ok('UnreadResponse'), ...COMMON_ERRORS },
      },
    },
    '/v1/groups': {
      post: {
        operationId: 'createGroup',
        summary: 'Create a group; the caller is its owner',
        requestBody: jsonBody('GroupCreateRequest'),
        responses: { 200: ok('GroupResponse'), ...COMMON_ERRORS, 409: errorResponse('2003 GROUP_FULL') },
      },
    },
    '/v1/groups/{groupId}': {
      get: {
        operationId: 'getGroup',
        summary: 'A group and its members (members only)',
        parameters: [groupIdParam],
        responses: { 200: ok('GroupResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS },
      },
    },
    '/v1/groups/{groupId}/members': {
      post: {
        operationId: 'addMembers',
        summary: 'Add members (any member may add)',
        parameters: [groupIdParam],
        requestBody: jsonBody('GroupMembersRequest'),
        responses: { 200: ok('GroupResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS, 409: errorResponse('2003 GROUP_FULL') },
      },
      delete: {
        operationId: 'removeMembers',
        summary: 'Remove members (the owner removes others; anyone removes themself)',
        parameters: [groupIdParam, queryList('uid', 'the uids to remove (repeat the parameter)')],
        responses: { 200: ok('GroupResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS },
      },
    },
    '/v1/groups/{groupId}/leave': {
      post: {
        operationId: 'leaveGroup',
        summary: 'Leave a group (no body, or {})',
        parameters: [groupIdParam],
        requestBody: { required: false, content: { 'application/json': { schema: { type: 'object', additionalProperties: false } } } },
        responses: { 200: ok('GroupResponse'), ...COMMON_ERRORS, ...GROUP_ERRORS },
      },
    },
    '/v1/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document',
        security: [],
        responses: { 200: { description: 'The OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } },
      },
    },
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The HS256 JWT the gateway accepts in Auth (docs/protocol.md, Tokens)' },
    },
    schemas: {
      Error: obj({
        code: int('stable numeric code (docs/protocol.md, Error codes)'),
        message: str('for people; do not parse'),
        retryable: { type: 'boolean', description: 'the same request may succeed if sent again (a send: with the same clientMsgId)' },
        retryAfterMs: int('429 only: when a request will be admitted again'),
      }, ['code', 'message', 'retryable']),
      Message: obj({
        msgId: str('server-assigned id'),
        seq: int('position in the caller\'s inbox; 0 in history replies'),
        convId: str('"p:<uidA>:<uidB>" (sorted) or "g:<groupId>"'),
        from: str('sender uid'),
        to: str('peer uid for 1:1, empty for groups'),
        groupId: str('group id, empty for 1:1'),
        clientMsgId: str('the sender\'s idempotency key'),
        sentAtMs: int('server time of the send, ms since the epoch'),
        contentType: str('e.g. text/plain'),
        content: str('the content as text; present only when it is valid UTF-8'),
        contentBase64: { type: 'string', contentEncoding: 'base64', description: 'the content bytes, standard padded base64' },
        convSeq: int('position in the conversation history'),
      }, ['msgId', 'seq', 'convId', 'from', 'to', 'groupId', 'clientMsgId', 'sentAtMs', 'contentType', 'contentBase64', 'convSeq']),
      SendRequest: obj({
        to: str('peer uid (exactly one of to and groupId)'),
        groupId: str('group id'),
        clientMsgId: { type: 'string', minLength: 1, maxLength: 128, description: 'idempotency key: a retry with the same id returns the first result' },
        contentType: { type: 'string', maxLength: 64, description: 'default text/plain' },
        content: str('UTF-8 text content (or contentBase64, not both)'),
        contentBase64: { type: 'string', contentEncoding: 'base64', description: 'binary content, standard padded base64' },
      }, ['clientMsgId']),
      SendResponse: obj({
        msgId: str('server-assigned id'),
        seq: int('the sender\'s inbox seq of this message'),
        sentAtMs: int('server time of the send'),
        duplicate: { type: 'boolean', description: 'true when this answered a retry' },
        convId: str('conversation id'),
        convSeq: int('position in the conversation history'),
      }),
      SyncResponse: obj({
        messages: { type: 'array', items: ref('Message') },
        hasMore: { type: 'boolean', description: 'ask again from the last seq returned' },
        maxSeq: int('the caller\'s newest seq'),
      }),
      HistoryResponse: obj({
        messages: { type: 'array', items: ref('Message') },
        hasMore: { type: 'boolean', description: 'ask again with beforeConvSeq = the last convSeq returned' },
      }),
      ReadRequest: obj({
        convId: str('conversation id'),
        seq: int('inbox seq read up to, inclusive'),
      }, ['convId']),
      Unread: obj({
        convId: str('conversation id'),
        count: int('unread messages'),
        readSeq: int('the read cursor'),
        lastSeq: int('the newest inbox seq of the conversation'),
      }),
      ReadResponse: obj({ unread: ref('Unread') }),
      UnreadResponse: obj({
        convs: { type: 'array', items: ref('Unread') },
        total: int('sum of the counts'),
      }),
      GroupCreateRequest: obj({
        name: str('1-64 characters, not blank'),
        members: { type: 'array', items: { type: 'string' }, description: 'uids besides the caller' },
      }, ['name']),
      GroupMembersRequest: obj({
        uids: { type: 'array', items: { type: 'string' }, minItems: 1 },
      }),
      Group: obj({
        groupId: str('group id'),
        name: str('group name'),
        owner: str('owner uid'),
        members: { type: 'array', items: { type: 'string' }, description: 'including the owner, in join order' },
        createdAtMs: int('creation time'),
      }),
      GroupResponse: obj({ group: ref('Group') }),
    },
  },
};
