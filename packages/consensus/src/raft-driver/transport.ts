// How a RaftGroup talks to its peers. The group is written against this interface only; production
// uses the gRPC implementation (grpc-transport.ts + peer-service.ts), tests may use the in-memory
// one (memory-transport.ts). Raft tolerates lost, duplicated and reordered messages, so a
// transport may drop messages when a peer is slow or down: it reports that, and the core probes
// again instead of pipelining into the void.

import type { Message, NodeId, SnapshotMeta } from '../raft/types.js';

/** A whole snapshot that arrived from the leader, ready to hand to the core. */
export interface ReceivedSnapshot {
  from: NodeId;
  to: NodeId;
  /** The sender's term when it sent the snapshot. */
  term: number;
  meta: SnapshotMeta;
  /** The snapshot payload as the sender stored it (storage-codec.ts, SNAPSHOT FILE PAYLOAD). */
  data: Buffer;
}

/** What the transport delivers to the group it serves. */
export interface RaftInbound {
  /**
   * One message from a peer. Must not block: the group queues it for its event loop.
   * `senderAddress` is where the sender says it listens, when the transport knows: a member that
   * joins learns where to answer a leader that is not in its starting address book.
   */
  receive(message: Message, senderAddress?: string): void;
  /** A complete snapshot; resolves once the group has handled it, with the group's term. */
  receiveSnapshot(snapshot: ReceivedSnapshot): Promise<{ term: number }>;
  /** Messages to `peer` could not be delivered (its stream broke or its queue overflowed). */
  unreachable(peer: NodeId): void;
}

export interface RaftTransport {
  /**
   * Starts delivering messages addressed to this member to `inbound`; `localAddress` is where this
   * member's peer service listens, announced to peers. Called once, by RaftGroup.start.
   */
  start(inbound: RaftInbound, localAddress: string): void;
  /**
   * Fire and forget. Messages to one peer leave in the order given (and in call order across
   * calls); a message to a peer with no known address is dropped. Never throws for network reasons.
   */
  send(messages: readonly Message[]): void;
  /** Streams a snapshot to `to`; resolves true once the peer has accepted the whole of it. */
  sendSnapshot(to: NodeId, term: number, meta: SnapshotMeta, data: Uint8Array): Promise<boolean>;
  /** The peers this member talks to now (id → host:port), itself excluded. */
  setPeers(peers: ReadonlyMap<NodeId, string>): void;
  /** Stops delivering inbound messages and closes every connection. */
  close(): Promise<void>;
}
