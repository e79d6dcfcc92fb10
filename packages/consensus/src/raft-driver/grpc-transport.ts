// The gRPC RaftTransport: one long-lived client-streaming Send call per peer carrying that peer's
// messages in order, and InstallSnapshot calls streaming snapshots in chunks. Inbound messages
// arrive through the process's ConsensusPeerService.
//
// A broken stream (peer down, connection reset) loses whatever was in flight: Raft retransmits.
// The transport reports the peer unreachable so the leader's core stops pipelining appends to it
// and probes instead, waits a backoff, then reopens the stream on the next message. While the
// stream is broken or backed up beyond maxQueuedMessages, messages to that peer are dropped.

import { Metadata, credentials as grpcCredentials, type ChannelCredentials, type ClientWritableStream } from '@grpc/grpc-js';
import { ConsensusClient, type InstallSnapshotRequest, type SendRequest } from '@concord/proto/consensus';
import { CLIENT_CHANNEL_OPTIONS, createLogger, type Logger } from '@concord/runtime';
import type { Message, NodeId, SnapshotMeta } from '../raft/types.js';
import { messageToWire } from './message-codec.js';
import { SENDER_ADDRESS_METADATA, type ConsensusPeerService } from './peer-service.js';
import type { RaftInbound, RaftTransport } from './transport.js';

/** InstallSnapshot chunk size: well under the 8 MiB gRPC message limit, large enough to stream fast. */
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Messages buffered for one peer while its stream is backed up; beyond, messages are dropped. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 4096;
/** First and longest wait before reopening a broken stream (doubling in between). */
export const DEFAULT_RECONNECT_BACKOFF_MS = { initial: 50, max: 2000 };
/** Deadline of one InstallSnapshot call. */
export const DEFAULT_SNAPSHOT_TIMEOUT_MS = 5 * 60 * 1000;

/**
 * HTTP/2 keepalive on peer channels: a peer that vanished without closing its TCP connection
 * (a partition, a dead host) is noticed within time + timeout, and the stream is reopened.
 *
 * Reconnection: grpc-js backs a channel off by its own timer (1 s growing by 1.6× up to 120 s), under
 * the stream backoff of PeerConnection, and refuses calls until it runs out. Left at that, a member
 * that was down for 30 s was caught up only 13 s after it came back, and after a longer outage it
 * could wait two minutes. So the channel retries at least every second: the stream backoff
 * (DEFAULT_RECONNECT_BACKOFF_MS) is what paces reconnection.
 */
const PEER_CHANNEL_OPTIONS = {
  ...CLIENT_CHANNEL_OPTIONS,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

export interface GrpcRaftTransportOptions {
  groupId: string;
  memberId: NodeId;
  /** The process's peer service; inbound messages for this group are registered with it. */
  peerService: ConsensusPeerService;
  /** Channel credentials for peers (default insecure, plain HTTP/2). */
  credentials?: ChannelCredentials;
  logger?: Logger;
  /** See DEFAULT_SNAPSHOT_CHUNK_BYTES. */
  snapshotChunkBytes?: number;
  /** See DEFAULT_MAX_QUEUED_MESSAGES. */
  maxQueuedMessages?: number;
  /** See DEFAULT_RECONNECT_BACKOFF_MS. */
  reconnectBackoffMs?: { initial: number; max: number };
  /** See DEFAULT_SNAPSHOT_TIMEOUT_MS. */
  snapshotTimeoutMs?: number;
}

interface TransportConfig {
  groupId: string;
  memberId: NodeId;
  credentials: ChannelCredentials;
  logger: Logger;
  snapshotChunkBytes: number;
  maxQueuedMessages: number;
  backoff: { initial: number; max: number };
  snapshotTimeoutMs: number;
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isSafeInteger(chosen) || chosen < 1) throw new RangeError(`${name}: must be a positive integer (got ${String(value)})`);
  return chosen;
}

/** One peer: its channel, its Send stream and the messages waiting for the stream to drain. */
class PeerConnection {
  readonly client: ConsensusClient;
  private stream: ClientWritableStream<SendRequest> | undefined;
  /** Messages held while the stream is backed up (write returned false). */
  private readonly backlog: SendRequest[] = [];
  private blocked = false;
  /** No stream is opened before this time (backoff after a failure). */
  private retryAt = 0;
  private backoffMs: number;
  private openedAt = 0;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly peerId: NodeId,
    private readonly config: TransportConfig,
    private readonly localAddress: string,
    private readonly onUnreachable: (peer: NodeId) => void,
  ) {
    this.client = new ConsensusClient(address, config.credentials, PEER_CHANNEL_OPTIONS);
    this.backoffMs = config.backoff.initial;
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    const stream = this.openStream();
    if (stream === undefined) return;
    for (const message of messages) {
      const request: SendRequest = { groupId: this.config.groupId, raft: messageToWire(message) };
      if (this.blocked) {
        if (this.backlog.length >= this.config.maxQueuedMessages) {
          // The peer (or the network to it) cannot keep up: shed load and let the core probe.
          this.backlog.length = 0;
          this.onUnreachable(this.peerId);
          return;
        }
        this.backlog.push(request);
      } else if (!stream.write(request)) {
        this.blocked = true;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backlog.length = 0;
    const stream = this.stream;
    this.stream = undefined;
    stream?.end();
    this.client.close();
  }

  private openStream(): ClientWritableStream<SendRequest> | undefined {
    if (this.stream !== undefined) return this.stream;
    if (Date.now() < this.retryAt) return undefined;
    const metadata = new Metadata();
    if (this.localAddress !== '') metadata.set(SENDER_ADDRESS_METADATA, this.localAddress);
    const stream = this.client.send(metadata, (error) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.blocked = false;
      this.backlog.length = 0;
      if (this.closed) return;
      if (error === null) {
        // The peer answered: it is shutting down or closed the stream. Reopen on the next message.
        return;
      }
      // A stream that lived longer than the longest backoff was healthy: start backing off small again.
      if (Date.now() - this.openedAt > this.config.backoff.max) this.backoffMs = this.config.backoff.initial;
      this.retryAt = Date.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.config.backoff.max);
      this.config.logger.debug({ group_id: this.config.groupId, peer: this.peerId, address: this.address, err: error.message }, 'peer stream failed');
      this.onUnreachable(this.peerId);
    });
    stream.on('drain', () => {
      if (this.stream !== stream) return;
      this.blocked = false;
      while (this.backlog.length > 0 && !this.blocked) {
        const request = this.backlog.shift()!;
        if (!stream.write(request)) this.blocked = true;
      }
    });
    // Errors are delivered to the callback above; without a listener an 'error' event would throw.
    stream.on('error', () => undefined);
    this.stream = stream;
    this.openedAt = Date.now();
    return stream;
  }
}

export class GrpcRaftTransport implements RaftTransport {
  private readonly config: TransportConfig;
  private readonly connections = new Map<NodeId, PeerConnection>();
  private inbound: RaftInbound | undefined;
  private localAddress = '';
  private unregister: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: GrpcRaftTransportOptions) {
    const backoff = options.reconnectBackoffMs ?? DEFAULT_RECONNECT_BACKOFF_MS;
    this.config = {
      groupId: options.groupId,
      memberId: options.memberId,
      credentials: options.credentials ?? grpcCredentials.createInsecure(),
      logger: options.logger ?? createLogger({ service: 'consensus', memberId: options.memberId }),
      snapshotChunkBytes: positiveInteger('snapshotChunkBytes', options.snapshotChunkBytes, DEFAULT_SNAPSHOT_CHUNK_BYTES),
      maxQueuedMessages: positiveInteger('maxQueuedMessages', options.maxQueuedMessages, DEFAULT_MAX_QUEUED_MESSAGES),
      backoff: {
        initial: positiveInteger('reconnectBackoffMs.initial', backoff.initial, DEFAULT_RECONNECT_BACKOFF_MS.initial),
        max: positiveInteger('reconnectBackoffMs.max', backoff.max, DEFAULT_RECONNECT_BACKOFF_MS.max),
      },
      snapshotTimeoutMs: positiveInteger('snapshotTimeoutMs', options.snapshotTimeoutMs, DEFAULT_SNAPSHOT_TIMEOUT_MS),
    };
  }

  start(inbound: RaftInbound, localAddress: string): void {
    if (this.inbound !== undefined) throw new Error('the transport is already started');
    this.inbound = inbound;
    this.localAddress = localAddress;
    this.unregister = this.options.peerService.register(this.options.groupId, this.options.memberId, inbound);
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    // Grouped per peer, so each peer's messages are written in one burst, in order.
    const byPeer = new Map<NodeId, Message[]>();
    for (const message of messages) {
      if (message.to === this.options.memberId) continue;
      let list = byPeer.get(message.to);
      if (list === undefined) byPeer.set(message.to, (list = []));
      list.push(message);
    }
    for (const [peer, list] of byPeer) this.connections.get(peer)?.send(list);
  }

  async sendSnapshot(to: NodeId, term: number, meta: SnapshotMeta, data: Uint8Array): Promise<boolean> {
    const connection = this.connections.get(to);
    if (this.closed || connection === undefined) return false;
    const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const chunkBytes = this.config.snapshotChunkBytes;
    return new Promise<boolean>((resolve) => {
      const call = connection.client.installSnapshot({ deadline: Date.now() + this.config.snapshotTimeoutMs }, (error) => {
        if (error !== null) {
          this.config.logger.warn({ group_id: this.options.groupId, peer: to, index: meta.index, err: error.message }, 'sending a snapshot failed');
        }
        resolve(error === null);
      });
      call.on('error', () => undefined);
      void (async () => {
        let offset = 0;
        do {
          const end = Math.min(offset + chunkBytes, payload.length);
          const chunk: InstallSnapshotRequest = {
            groupId: this.options.groupId,
            from: this.options.memberId,
            to,
            term,
            index: meta.index,
            snapshotTerm: meta.term,
            offset,
            data: payload.subarray(offset, end),
            done: end === payload.length,
            // Membership goes on the first chunk only (the proto's contract); later ones omit it.
            voters: offset === 0 ? meta.membership.voters : [],
            learners: offset === 0 ? meta.membership.learners : [],
          };
          offset = end;
          if (!call.write(chunk)) {
            await new Promise<void>((drained) => {
              const settle = (): void => {
                call.off('drain', settle);
                call.off('close', settle);
                drained();
              };
              call.on('drain', settle);
              call.on('close', settle);
            });
          }
        } while (offset < payload.length && !call.destroyed);
        call.end();
      })();
    });
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    if (this.closed) return;
    for (const [peer, connection] of this.connections) {
      if (peers.get(peer) !== connection.address) {
        connection.close();
        this.connections.delete(peer);
      }
    }
    for (const [peer, address] of peers) {
      if (peer === this.options.memberId || this.connections.has(peer)) continue;
      this.connections.set(peer, new PeerConnection(address, peer, this.config, this.localAddress, (unreachable) => this.inbound?.unreachable(unreachable)));
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.unregister?.();
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
    return Promise.resolve();
  }
}
