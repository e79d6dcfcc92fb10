// Building and classifying Raft messages.
import type { Message, MessageType, NodeId } from './types.js';

/** Fields a message may set beyond type/from/to/term; everything else defaults to zero/empty. */
export type MessageFields = Partial<Omit<Message, 'type' | 'from' | 'to' | 'term'>>;

export function newMessage(type: MessageType, from: NodeId, to: NodeId, term: number, fields: MessageFields = {}): Message {
  const m: Message = {
    type,
    from,
    to,
    term,
    logTerm: fields.logTerm ?? 0,
    index: fields.index ?? 0,
    entries: fields.entries ?? [],
    commit: fields.commit ?? 0,
    reject: fields.reject ?? false,
    rejectHint: fields.rejectHint ?? 0,
  };
  if (fields.context !== undefined) m.context = fields.context;
  if (fields.snapshot !== undefined) m.snapshot = fields.snapshot;
  return m;
}

/**
 * Messages that may only leave once the Ready that produced them is durable:
 * - vote and pre-vote responses: a grant is a promise recorded in hardState.vote (§5.2, thesis
 *   §3.8); rejections travel the same way so that responses are never reordered among themselves;
 * - append and snapshot responses: an acknowledgement lets the leader count the entries as
 *   replicated here (§5.3); they must survive a crash of this node;
 * - vote requests: a candidate must never ask for votes in a term it could forget. If it crashed
 *   before its new term was durable, it could restart in the old term, campaign into the same term
 *   again, collect the same votes (they were granted to it) and lead one term twice with two
 *   different logs. Sending the request only after the term is durable rules that out, and makes
 *   every later message of that term (appends, heartbeats) safe to send before persisting.
 * Pre-vote requests change nothing and leave at once.
 */
export function mustWaitForPersist(type: MessageType): boolean {
  switch (type) {
    case 'vote':
    case 'vote_response':
    case 'pre_vote_response':
    case 'append_response':
    case 'snapshot_response':
      return true;
    default:
      return false;
  }
}

/**
 * vote.context of a campaign started by timeout_now (leadership transfer, thesis §3.10): voters
 * disregard leader stickiness for it, since the current leader asked for the election.
 */
export const TRANSFER_CONTEXT: Uint8Array = new TextEncoder().encode('leadership-transfer');

export function isTransferContext(context: Uint8Array | undefined): boolean {
  if (context === undefined || context.length !== TRANSFER_CONTEXT.length) return false;
  return context.every((byte, i) => byte === TRANSFER_CONTEXT[i]);
}

export function isLeaderMessage(type: MessageType): boolean {
  return type === 'append' || type === 'heartbeat' || type === 'snapshot';
}
