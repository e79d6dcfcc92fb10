// An in-process RaftTransport for tests: members of one MemoryRaftNetwork reach each other by
// member id (addresses are ignored). Delivery is asynchronous (setImmediate), as over a network,
// and a member can be cut off and reconnected to test partitions.

import type { Message, NodeId, SnapshotMeta } from '../raft/types.js';
import type { RaftInbound, RaftTransport } from './transport.js';

export class MemoryRaftNetwork {
  private readonly members = new Map<string, RaftInbound>();
  private readonly isolated = new Set<NodeId>();

  /** The transport of member `memberId` in group `groupId`. */
  transport(groupId: string, memberId: NodeId): RaftTransport {
    return new MemoryRaftTransport(this, groupId, memberId);
  }

  /** Drops every message to and from `memberId` until heal(). */
  isolate(memberId: NodeId): void {
    this.isolated.add(memberId);
  }

  heal(memberId: NodeId): void {
    this.isolated.delete(memberId);
  }

  /** @internal */
  attach(groupId: string, memberId: NodeId, inbound: RaftInbound): void {
    this.members.set(`${groupId}/${memberId}`, inbound);
  }

  /** @internal */
  detach(groupId: string, memberId: NodeId, inbound: RaftInbound): void {
    if (this.members.get(`${groupId}/${memberId}`) === inbound) this.members.delete(`${groupId}/${memberId}`);
  }

  /** @internal The receiver, or undefined when the link is cut or the receiver is gone. */
  route(groupId: string, from: NodeId, to: NodeId): RaftInbound | undefined {
    if (this.isolated.has(from) || this.isolated.has(to)) return undefined;
    return this.members.get(`${groupId}/${to}`);
  }
}

class MemoryRaftTransport implements RaftTransport {
  private inbound: RaftInbound | undefined;
  private peers: ReadonlyMap<NodeId, string> = new Map();
  private closed = false;

  constructor(
    private readonly network: MemoryRaftNetwork,
    private readonly groupId: string,
    private readonly memberId: NodeId,
  ) {}

  start(inbound: RaftInbound, localAddress: string): void {
    void localAddress;
    this.inbound = inbound;
    this.network.attach(this.groupId, this.memberId, inbound);
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    const batch = messages.filter((message) => this.peers.has(message.to));
    if (batch.length === 0) return;
    setImmediate(() => {
      for (const message of batch) {
        const receiver = this.network.route(this.groupId, this.memberId, message.to);
        if (receiver === undefined) this.inbound?.unreachable(message.to);
        else receiver.receive(structuredClone(message));
      }
    });
  }

  async sendSnapshot(to: NodeId, term: number, meta: SnapshotMeta, data: Uint8Array): Promise<boolean> {
    await new Promise((resolve) => setImmediate(resolve));
    const receiver = this.network.route(this.groupId, this.memberId, to);
    if (this.closed || receiver === undefined) return false;
    try {
      await receiver.receiveSnapshot({ from: this.memberId, to, term, meta: structuredClone(meta), data: Buffer.from(data) });
      return true;
    } catch {
      return false;
    }
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    this.peers = new Map(peers);
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.inbound !== undefined) this.network.detach(this.groupId, this.memberId, this.inbound);
    return Promise.resolve();
  }
}
