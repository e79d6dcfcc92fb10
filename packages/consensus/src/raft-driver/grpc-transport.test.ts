import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { ConsensusClient, type InstallSnapshotResponse } from '@concord/proto/consensus';
import { ConcordServer, createLogger } from '@concord/runtime';
import type { Message, SnapshotMeta } from '../raft/types.js';
import { GrpcRaftTransport } from './grpc-transport.js';
import { messageToWire } from './message-codec.js';
import { ConsensusPeerService } from './peer-service.js';
import { encodeSnapshotPayload } from './storage-codec.js';
import { eventually } from './testing.js';
import type { RaftInbound, ReceivedSnapshot } from './transport.js';

const logger = createLogger({ service: 'transport-test', level: 'silent' });

/** Collects what a transport delivers. */
class RecordingInbound implements RaftInbound {
  messages: { message: Message; senderAddress: string | undefined }[] = [];
  snapshots: ReceivedSnapshot[] = [];
  unreachablePeers: string[] = [];
  receive(message: Message, senderAddress?: string): void {
    this.messages.push({ message, senderAddress });
  }
  receiveSnapshot(snapshot: ReceivedSnapshot): Promise<{ term: number }> {
    this.snapshots.push(snapshot);
    return Promise.resolve({ term: 42 });
  }
  unreachable(peer: string): void {
    this.unreachablePeers.push(peer);
  }
}

function heartbeat(from: string, to: string, n: number): Message {
  return { type: 'heartbeat', from, to, term: 3, logTerm: 0, index: 0, entries: [], commit: n, reject: false, rejectHint: 0 };
}

const META: SnapshotMeta = { index: 900, term: 4, membership: { voters: ['a', 'b', 'c'], learners: ['d'] } };

describe('GrpcRaftTransport and ConsensusPeerService', () => {
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function member(id: string): Promise<{ transport: GrpcRaftTransport; inbound: RecordingInbound; server: ConcordServer; peerService: ConsensusPeerService }> {
    const peerService = new ConsensusPeerService({ logger, maxSnapshotBytes: 8 * 1024 * 1024 });
    const server = await ConcordServer.start({ host: '127.0.0.1', port: 0, services: [peerService.binding()], logger, shutdownGraceMs: 1000 });
    const transport = new GrpcRaftTransport({ groupId: 'g1', memberId: id, peerService, logger, reconnectBackoffMs: { initial: 10, max: 50 } });
    const inbound = new RecordingInbound();
    transport.start(inbound, server.address);
    cleanups.push(async () => {
      await transport.close();
      peerService.close();
      await server.shutdown();
    });
    return { transport, inbound, server, peerService };
  }

  it('delivers each peer its messages in order, with the sender address', async () => {
    const a = await member('a');
    const b = await member('b');
    a.transport.setPeers(new Map([['b', b.server.address]]));
    for (let batch = 0; batch < 10; batch++) {
      a.transport.send(Array.from({ length: 50 }, (_, i) => heartbeat('a', 'b', batch * 50 + i)));
    }
    await eventually('500 messages', () => b.inbound.messages.length === 500);
    assert.deepEqual(
      b.inbound.messages.map(({ message }) => message.commit),
      Array.from({ length: 500 }, (_, i) => i),
    );
    assert.ok(b.inbound.messages.every(({ senderAddress }) => senderAddress === a.server.address));
    // Messages for members this transport has no address for are dropped, not queued.
    a.transport.send([heartbeat('a', 'nobody', 1)]);
  });

  it('streams a multi-chunk snapshot and hands the whole of it over', async () => {
    const a = await member('a');
    const b = await member('b');
    a.transport.setPeers(new Map([['b', b.server.address]]));
    const state = Buffer.alloc(2_500_000);
    for (let i = 0; i < state.length; i++) state[i] = (i * 7) & 0xff;
    const payload = encodeSnapshotPayload({ meta: META, addresses: { a: 'h:1' }, stateMachineData: state });
    assert.equal(await a.transport.sendSnapshot('b', 5, META, payload), true);
    assert.equal(b.inbound.snapshots.length, 1);
    const [received] = b.inbound.snapshots;
    assert.deepEqual({ from: received?.from, to: received?.to, term: received?.term, meta: received?.meta }, { from: 'a', to: 'b', term: 5, meta: META });
    assert.ok(received?.data.equals(payload));
  });

  it('reports a peer that cannot be reached, and a snapshot that did not arrive', async () => {
    const a = await member('a');
    const gone = await member('gone');
    const address = gone.server.address;
    gone.peerService.close();
    await gone.server.shutdown();
    a.transport.setPeers(new Map([['gone', address]]));
    a.transport.send([heartbeat('a', 'gone', 1)]);
    await eventually('an unreachable report', () => a.inbound.unreachablePeers.includes('gone'));
    assert.equal(await a.transport.sendSnapshot('gone', 5, META, encodeSnapshotPayload({ meta: META, addresses: {}, stateMachineData: Buffer.alloc(10) })), false);
  });

  it('drops messages for another member or an unknown group', async () => {
    const a = await member('a');
    const b = await member('b');
    a.transport.setPeers(new Map([['b', b.server.address]]));
    const other = new GrpcRaftTransport({ groupId: 'other-group', memberId: 'a', peerService: a.peerService, logger });
    other.setPeers(new Map([['b', b.server.address]]));
    other.send([heartbeat('a', 'b', 1)]);
    a.transport.send([heartbeat('a', 'not-b', 2), heartbeat('a', 'b', 3)]);
    await eventually('the message for b', () => b.inbound.messages.length > 0);
    assert.deepEqual(b.inbound.messages.map(({ message }) => message.commit), [3]);
    await other.close();
  });

  it('rejects malformed snapshot streams with a clear status', async () => {
    const b = await member('b');
    const client = new ConsensusClient(b.server.address, credentials.createInsecure());
    cleanups.push(async () => client.close());
    const call = (chunks: Parameters<ReturnType<ConsensusClient['installSnapshot']>['write']>[0][]): Promise<ServiceError | InstallSnapshotResponse> =>
      new Promise((resolve) => {
        const stream = client.installSnapshot((error, response) => resolve(error ?? response));
        for (const chunk of chunks) stream.write(chunk);
        stream.end();
      });
    const base = { groupId: 'g1', from: 'a', to: 'b', term: 5, index: 10, snapshotTerm: 2, offset: 0, data: Buffer.from('x'), done: false, voters: ['a', 'b'], learners: [] };
    const gap = (await call([base, { ...base, offset: 5, done: true }])) as ServiceError;
    assert.equal(gap.code, status.INVALID_ARGUMENT);
    assert.match(gap.details, /offset 5, expected 1/);
    const unfinished = (await call([base])) as ServiceError;
    assert.equal(unfinished.code, status.INVALID_ARGUMENT);
    assert.match(unfinished.details, /ended before the chunk marked done/);
    const garbage = (await call([{ ...base, done: true }])) as ServiceError;
    assert.equal(garbage.code, status.INVALID_ARGUMENT);
    assert.match(garbage.details, /snapshot payload/);
    const elsewhere = (await call([{ ...base, groupId: 'g9', done: true }])) as ServiceError;
    assert.equal(elsewhere.code, status.UNAVAILABLE);
    assert.equal(b.inbound.snapshots.length, 0);
  });

  it('sends response headers as soon as a Send stream opens', async () => {
    // Until a call has them, grpc-js's client holds on to every message written on it (for a retry
    // it would never make here): a peer stream would keep thousands of acknowledgements alive.
    const b = await member('b');
    const client = new ConsensusClient(b.server.address, credentials.createInsecure());
    cleanups.push(async () => client.close());
    const stream = client.send(() => undefined);
    const headers = new Promise<void>((resolve) => stream.on('metadata', () => resolve()));
    stream.write({ groupId: 'g1', raft: { ...messageToWire(heartbeat('a', 'b', 1)) } });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no response headers within 5 s of opening the stream')), 5000);
    });
    try {
      await Promise.race([headers, late]);
    } finally {
      clearTimeout(timer);
    }
    await eventually('the message delivered', () => b.inbound.messages.length === 1);
    stream.end();
  });

  it('answers open streams on close, so the server can shut down gracefully', async () => {
    const b = await member('b');
    const client = new ConsensusClient(b.server.address, credentials.createInsecure());
    cleanups.push(async () => client.close());
    const answered = new Promise<ServiceError | null>((resolve) => {
      const stream = client.send((error) => resolve(error));
      stream.write({ groupId: 'g1', raft: { ...messageToWire(heartbeat('a', 'b', 1)) } });
    });
    await eventually('the stream to be open', () => b.inbound.messages.length === 1);
    // The peer never ends its stream; close() answers it (OK) instead of leaving it to the forced shutdown.
    b.peerService.close();
    assert.equal(await answered, null);
  });
});
