// Conversion between the core's Message and the wire's RaftMessage (concord.v1.Consensus). Every
// message type but 'snapshot' has a wire form: a snapshot travels as an InstallSnapshot stream
// (the transport attaches the data), and the receiving transport turns the assembled stream back
// into a 'snapshot' Message (see snapshotMessage).

import {
  EntryType as WireEntryType,
  RaftMessageType,
  type Entry as WireEntry,
  type RaftMessage,
} from '@concord/proto/consensus';
import type { Entry, EntryType, Message, MessageType, NodeId, SnapshotMeta } from '../raft/types.js';

export class MessageCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MessageCodecError';
  }
}

type WireMessageType = Exclude<MessageType, 'snapshot'>;

const MESSAGE_TYPES_TO_WIRE: Record<WireMessageType, RaftMessageType> = {
  pre_vote: RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE,
  pre_vote_response: RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE_RESPONSE,
  vote: RaftMessageType.RAFT_MESSAGE_TYPE_VOTE,
  vote_response: RaftMessageType.RAFT_MESSAGE_TYPE_VOTE_RESPONSE,
  append: RaftMessageType.RAFT_MESSAGE_TYPE_APPEND,
  append_response: RaftMessageType.RAFT_MESSAGE_TYPE_APPEND_RESPONSE,
  heartbeat: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT,
  heartbeat_response: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT_RESPONSE,
  snapshot_response: RaftMessageType.RAFT_MESSAGE_TYPE_SNAPSHOT_RESPONSE,
  timeout_now: RaftMessageType.RAFT_MESSAGE_TYPE_TIMEOUT_NOW,
  read_index: RaftMessageType.RAFT_MESSAGE_TYPE_READ_INDEX,
  read_index_response: RaftMessageType.RAFT_MESSAGE_TYPE_READ_INDEX_RESPONSE,
};

const MESSAGE_TYPES_FROM_WIRE = new Map<RaftMessageType, WireMessageType>(
  (Object.entries(MESSAGE_TYPES_TO_WIRE) as [WireMessageType, RaftMessageType][]).map(([type, wire]) => [wire, type]),
);

const ENTRY_TYPES_TO_WIRE: Record<EntryType, WireEntryType> = {
  normal: WireEntryType.ENTRY_TYPE_NORMAL,
  conf_change: WireEntryType.ENTRY_TYPE_CONF_CHANGE,
  noop: WireEntryType.ENTRY_TYPE_NOOP,
};

const ENTRY_TYPES_FROM_WIRE = new Map<WireEntryType, EntryType>(
  (Object.entries(ENTRY_TYPES_TO_WIRE) as [EntryType, WireEntryType][]).map(([type, wire]) => [wire, type]),
);

/** A Buffer view of `bytes` without copying (the generated code wants Buffers). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function entryToWire(entry: Entry): WireEntry {
  return { term: entry.term, index: entry.index, type: ENTRY_TYPES_TO_WIRE[entry.type], data: asBuffer(entry.data) };
}

export function entryFromWire(entry: WireEntry): Entry {
  const type = ENTRY_TYPES_FROM_WIRE.get(entry.type);
  if (type === undefined) throw new MessageCodecError(`entry ${entry.index}: unknown entry type ${entry.type}`);
  return { term: entry.term, index: entry.index, type, data: entry.data };
}

/** Whether the message has a RaftMessage form ('snapshot' goes through InstallSnapshot). */
export function hasWireForm(message: Message): boolean {
  return message.type !== 'snapshot';
}

export function messageToWire(message: Message): RaftMessage {
  if (message.type === 'snapshot') {
    throw new MessageCodecError('a snapshot message is sent with InstallSnapshot, not as a RaftMessage');
  }
  return {
    type: MESSAGE_TYPES_TO_WIRE[message.type],
    from: message.from,
    to: message.to,
    term: message.term,
    logTerm: message.logTerm,
    index: message.index,
    entries: message.entries.map(entryToWire),
    commit: message.commit,
    reject: message.reject,
    rejectHint: message.rejectHint,
    context: message.context === undefined ? Buffer.alloc(0) : asBuffer(message.context),
  };
}

/** Decodes a received RaftMessage; an empty context reads as none (proto3 cannot tell them apart). */
export function messageFromWire(wire: RaftMessage): Message {
  const type = MESSAGE_TYPES_FROM_WIRE.get(wire.type);
  if (type === undefined) throw new MessageCodecError(`unknown Raft message type ${wire.type}`);
  if (wire.from === '' || wire.to === '') throw new MessageCodecError(`Raft message ${type} without from/to`);
  const message: Message = {
    type,
    from: wire.from,
    to: wire.to,
    term: wire.term,
    logTerm: wire.logTerm,
    index: wire.index,
    entries: wire.entries.map(entryFromWire),
    commit: wire.commit,
    reject: wire.reject,
    rejectHint: wire.rejectHint,
  };
  if (wire.context.length > 0) message.context = wire.context;
  return message;
}

/** The 'snapshot' Message a receiving driver steps once a whole InstallSnapshot stream has arrived. */
export function snapshotMessage(from: NodeId, to: NodeId, term: number, meta: SnapshotMeta): Message {
  return {
    type: 'snapshot',
    from,
    to,
    term,
    logTerm: meta.term,
    index: meta.index,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    snapshot: meta,
  };
}
