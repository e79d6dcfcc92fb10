// The simulated transport. Every packet — Raft messages between servers, client requests and
// replies — is given a delivery tick when it is sent: a random latency, sometimes a long delay (so
// packets overtake each other: reordering), sometimes a second copy with its own latency
// (duplication), sometimes nothing at all (loss). Partitions are directed cuts between servers,
// checked at send and again at delivery: cutting only A→B gives the asymmetric case where B hears
// nothing from A while A still hears B. Clients are never partitioned, and their packets are never
// duplicated (a client speaks over one connection, which does not replay requests; a duplicated
// write would be proposed twice, and a refusal of one copy would wrongly tell the client that the
// write was never applied). Their packets can still be lost or late.
import type { KvInput, KvOutput } from '@concord/lincheck';
import type { Message, NodeId } from '../raft/types.js';
import type { KvSnapshotData } from './kv.js';
import type { SimRng } from './rng.js';

export interface ClientRequest {
  client: string;
  request: number;
  input: KvInput;
}

export type ClientReply =
  | { client: string; request: number; kind: 'ok'; output: KvOutput }
  /** Definitely not applied (refused before it was appended, or a read refused): the client may say so. */
  | { client: string; request: number; kind: 'rejected'; leaderHint: NodeId | '' }
  /** The server lost track of it (entry overwritten, state replaced by a snapshot): outcome unknown. */
  | { client: string; request: number; kind: 'lost' };

export type Packet =
  | {
      kind: 'raft';
      message: Message;
      /** A snapshot message carries the sender's snapshot data, as the driver streams it. */
      snapshotData?: KvSnapshotData;
      /** The copy whose fate is reported back to the sender (reportSnapshot); duplicates are not. */
      reportsSnapshot: boolean;
      senderIncarnation: number;
    }
  | { kind: 'request'; from: string; to: NodeId; request: ClientRequest }
  | { kind: 'reply'; from: NodeId; to: string; reply: ClientReply }
  /** The outcome of streaming a snapshot, told to the sender's core (reportSnapshot). */
  | { kind: 'snapshot-report'; from: NodeId; to: NodeId; ok: boolean; senderIncarnation: number };

export interface LinkProfile {
  lossRate: number;
  duplicateRate: number;
  /** Normal latency, in ticks, drawn uniformly from [1, maxLatency]. */
  maxLatency: number;
  /** Chance that a packet is held much longer, up to longDelayTicks extra. */
  longDelayRate: number;
  longDelayTicks: number;
}

/** No loss, duplication or long delays: the liveness phase's network (with the seed's latency). */
export const CALM_LINKS: LinkProfile = { lossRate: 0, duplicateRate: 0, maxLatency: 1, longDelayRate: 0, longDelayTicks: 0 };

export class SimNetwork {
  private readonly due = new Map<number, Packet[]>();
  private readonly cuts = new Set<string>();
  private pending = 0;
  links: LinkProfile;

  constructor(
    private readonly rng: SimRng,
    links: LinkProfile,
  ) {
    this.links = links;
  }

  /** Queues a packet sent at `now`; returns false when it was lost on the way (never delivered). */
  send(now: number, packet: Packet): boolean {
    const { lossRate, duplicateRate } = this.links;
    const isReport = packet.kind === 'snapshot-report';
    if (!isReport && this.rng.chance(lossRate)) return false;
    this.schedule(now + this.latency(), packet);
    if (packet.kind === 'raft' && this.rng.chance(duplicateRate)) {
      this.schedule(now + this.latency(), { ...packet, reportsSnapshot: false });
    }
    return true;
  }

  /** Schedules a packet for exactly `at` (no loss, no duplication). */
  schedule(at: number, packet: Packet): void {
    let bucket = this.due.get(at);
    if (bucket === undefined) {
      bucket = [];
      this.due.set(at, bucket);
    }
    bucket.push(packet);
    this.pending++;
  }

  /** Removes and returns the packets due at `now`, in the order they were sent. */
  take(now: number): Packet[] {
    const bucket = this.due.get(now);
    if (bucket === undefined) return [];
    this.due.delete(now);
    this.pending -= bucket.length;
    return bucket;
  }

  get inFlight(): number {
    return this.pending;
  }

  latency(): number {
    const { maxLatency, longDelayRate, longDelayTicks } = this.links;
    let ticks = 1 + this.rng.int(maxLatency);
    if (longDelayTicks > 0 && this.rng.chance(longDelayRate)) ticks += 1 + this.rng.int(longDelayTicks);
    return ticks;
  }

  /** Cuts the directed link from → to. */
  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.size > 0 && this.cuts.has(`${from}>${to}`);
  }

  get partitioned(): boolean {
    return this.cuts.size > 0;
  }

  heal(): void {
    this.cuts.clear();
  }

  describeCuts(): string {
    return [...this.cuts].sort().join(' ');
  }
}
