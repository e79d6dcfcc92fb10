import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftMessage, RaftMessageType } from '@concord/proto/consensus';
import type { Message, MessageType } from '../raft/types.js';
import { decodeNormalEntry, encodeCommandEntry, encodeMemberAddressEntry } from './entry-envelope.js';
import { MessageCodecError, messageFromWire, messageToWire, snapshotMessage } from './message-codec.js';
import {
  StorageFormatError,
  decodeRecord,
  decodeSnapshotPayload,
  encodeBootstrap,
  encodeEntries,
  encodeHardState,
  encodeSnapshotMarker,
  encodeSnapshotPayload,
} from './storage-codec.js';

const WIRE_TYPES: Exclude<MessageType, 'snapshot'>[] = [
  'pre_vote',
  'pre_vote_response',
  'vote',
  'vote_response',
  'append',
  'append_response',
  'heartbeat',
  'heartbeat_response',
  'snapshot_response',
  'timeout_now',
  'read_index',
  'read_index_response',
];

function sample(type: MessageType, n: number): Message {
  const message: Message = {
    type,
    from: 'member-a',
    to: 'member-b',
    term: 7 + n,
    logTerm: 6,
    index: 1000 + n,
    entries: [
      { term: 6, index: 1001, type: 'normal', data: Buffer.from(`command ${n}`) },
      { term: 7, index: 1002, type: 'conf_change', data: Buffer.from('{"kind":"remove","node":"c"}') },
      { term: 7, index: 1003, type: 'noop', data: new Uint8Array(0) },
    ],
    commit: 999,
    reject: n % 2 === 0,
    rejectHint: 42,
    context: Buffer.from(`read-${n}`),
  };
  return message;
}

/** Through the generated protobuf encoder and decoder, as over the wire. */
function overTheWire(message: Message): Message {
  const bytes = RaftMessage.encode(messageToWire(message)).finish();
  return messageFromWire(RaftMessage.decode(bytes));
}

function plain(message: Message): unknown {
  return {
    ...message,
    entries: message.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })),
    context: message.context === undefined ? undefined : Buffer.from(message.context).toString('hex'),
  };
}

describe('message codec', () => {
  it('round-trips every message type through protobuf', () => {
    WIRE_TYPES.forEach((type, n) => {
      const message = sample(type, n);
      assert.deepEqual(plain(overTheWire(message)), plain(message), type);
    });
  });

  it('maps each message type to a distinct wire enum value', () => {
    const values = WIRE_TYPES.map((type) => messageToWire(sample(type, 0)).type);
    assert.equal(new Set(values).size, WIRE_TYPES.length);
    assert.ok(!values.includes(RaftMessageType.RAFT_MESSAGE_TYPE_UNSPECIFIED));
  });

  it('reads an empty context as none', () => {
    const message = sample('heartbeat', 1);
    delete message.context;
    assert.equal(overTheWire(message).context, undefined);
  });

  it('refuses to encode a snapshot message (it goes through InstallSnapshot)', () => {
    const message = snapshotMessage('a', 'b', 3, { index: 10, term: 2, membership: { voters: ['a', 'b'], learners: [] } });
    assert.throws(() => messageToWire(message), MessageCodecError);
  });

  it('rejects unknown message and entry types', () => {
    const wire = messageToWire(sample('append', 1));
    assert.throws(() => messageFromWire({ ...wire, type: RaftMessageType.RAFT_MESSAGE_TYPE_UNSPECIFIED }), /unknown Raft message type/);
    assert.throws(() => messageFromWire({ ...wire, entries: [{ term: 1, index: 1, type: 0, data: Buffer.alloc(0) }] }), /unknown entry type/);
    assert.throws(() => messageFromWire({ ...wire, from: '' }), /without from\/to/);
  });
});

describe('storage codec', () => {
  it('round-trips every record kind', () => {
    assert.deepEqual(decodeRecord(encodeHardState({ term: 9, vote: 'ünïcode-id', commit: 77 })), {
      kind: 'hard_state',
      hardState: { term: 9, vote: 'ünïcode-id', commit: 77 },
    });
    assert.deepEqual(decodeRecord(encodeHardState({ term: 0, vote: '', commit: 0 })), {
      kind: 'hard_state',
      hardState: { term: 0, vote: '', commit: 0 },
    });
    const decoded = decodeRecord(
      encodeEntries([
        { term: 2, index: 5, type: 'normal', data: Buffer.from('x') },
        { term: 2, index: 6, type: 'conf_change', data: Buffer.from('{}') },
        { term: 3, index: 7, type: 'noop', data: Buffer.alloc(0) },
      ]),
    );
    assert.equal(decoded.kind, 'entries');
    assert.deepEqual(
      decoded.kind === 'entries' ? decoded.entries.map((e) => [e.term, e.index, e.type, Buffer.from(e.data).toString()]) : [],
      [
        [2, 5, 'normal', 'x'],
        [2, 6, 'conf_change', '{}'],
        [3, 7, 'noop', ''],
      ],
    );
    const marker = { index: 2 ** 40, term: 12, membership: { voters: ['a', 'b'], learners: ['c'] } };
    assert.deepEqual(decodeRecord(encodeSnapshotMarker(marker)), { kind: 'snapshot_marker', marker });
    const bootstrap = { voters: ['a'], addresses: { a: '127.0.0.1:7000' } };
    assert.deepEqual(decodeRecord(encodeBootstrap(bootstrap)), { kind: 'bootstrap', bootstrap });
  });

  it('round-trips a snapshot payload', () => {
    const snapshot = {
      meta: { index: 500, term: 4, membership: { voters: ['a', 'b', 'c'], learners: ['d'] } },
      addresses: { a: 'h:1', b: 'h:2', c: 'h:3', d: 'h:4' },
      stateMachineData: Buffer.from('the state'),
    };
    const decoded = decodeSnapshotPayload(encodeSnapshotPayload(snapshot));
    assert.deepEqual(decoded.meta, snapshot.meta);
    assert.deepEqual(decoded.addresses, snapshot.addresses);
    assert.equal(Buffer.from(decoded.stateMachineData).toString(), 'the state');
  });

  it('rejects damaged records with a StorageFormatError', () => {
    assert.throws(() => decodeRecord(Buffer.from([99])), StorageFormatError);
    assert.throws(() => decodeRecord(encodeHardState({ term: 1, vote: 'a', commit: 1 }).subarray(0, 10)), /truncated/);
    assert.throws(() => decodeRecord(Buffer.concat([encodeHardState({ term: 1, vote: 'a', commit: 1 }), Buffer.from([0])])), /unexpected bytes/);
    assert.throws(() => encodeEntries([
      { term: 1, index: 1, type: 'normal', data: Buffer.alloc(0) },
      { term: 1, index: 3, type: 'normal', data: Buffer.alloc(0) },
    ]), /consecutive/);
    assert.throws(() => decodeSnapshotPayload(Buffer.from([2, 0, 0, 0, 0])), /unknown payload format/);
  });
});

describe('normal entry envelope', () => {
  it('wraps commands and member addresses', () => {
    const command = Buffer.from([0, 1, 2, 255]);
    const decoded = decodeNormalEntry(encodeCommandEntry(command), 1);
    assert.equal(decoded.kind, 'command');
    assert.deepEqual(decoded.kind === 'command' ? Buffer.from(decoded.command) : undefined, command);
    assert.deepEqual(decodeNormalEntry(encodeCommandEntry(new Uint8Array(0)), 2), { kind: 'command', command: Buffer.alloc(0) });
    assert.deepEqual(decodeNormalEntry(encodeMemberAddressEntry('d', '127.0.0.1:7004'), 3), {
      kind: 'member_address',
      node: 'd',
      address: '127.0.0.1:7004',
    });
    assert.deepEqual(decodeNormalEntry(new Uint8Array(0), 4), { kind: 'empty' });
  });

  it('refuses entries of an unknown format', () => {
    assert.throws(() => decodeNormalEntry(Buffer.from([9, 1, 2]), 5), /unknown entry tag 9/);
  });
});
