// An in-memory cluster for tests: RaftCore instances, a perfect driver per node (persist → send →
// apply → advance against MemoryStorage), and a network that moves messages only when told to —
// deliver all, drop some, partition, heal. Everything is deterministic: randomness comes from seeded
// generators, time from explicit ticks. Safety checks run on every Ready (election safety, state
// machine safety), so every test that uses the network also checks them.
import { RaftCore } from '../core.js';
import type { RaftCoreOptions } from '../config.js';
import { describeEntry, describeMessage, text } from './format.js';
import { mulberry32 } from './rng.js';
import type { Entry, HardState, Membership, Message, NodeId, RaftRestoredState, ReadState, Ready, SnapshotMeta } from '../types.js';

/** Options every simulated node gets unless overridden. */
export type SimOptions = Omit<RaftCoreOptions, 'id' | 'random'> & { seed: number };

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: false,
  checkQuorum: false,
  maxAppendEntries: 64,
  maxAppendBytes: 1 << 20,
  maxInflightAppends: 256,
  seed: 1,
};

/** One applied command of the test state machine (which is just the list of them). */
export interface AppliedCommand {
  index: number;
  term: number;
  text: string;
}

/** What a driver would keep on disk. */
export class MemoryStorage {
  hardState: HardState = { term: 0, vote: '', commit: 0 };
  snapshot: SnapshotMeta | undefined;
  snapshotData: AppliedCommand[] = [];
  entries: Entry[] = [];

  /** Persists a Ready's durable parts in the documented order: snapshot, entries, hardState. */
  persist(rd: Ready, incomingSnapshotData: (index: number) => AppliedCommand[]): void {
    if (rd.snapshot) {
      this.snapshot = rd.snapshot;
      this.snapshotData = incomingSnapshotData(rd.snapshot.index);
      this.entries = [];
    }
    const first = rd.entries[0];
    if (first !== undefined) {
      const offset = this.snapshot?.index ?? 0;
      const keep = first.index - offset - 1;
      if (keep < 0 || keep > this.entries.length) {
        throw new Error(`storage: entries from ${first.index} leave a gap (stored ${offset + 1}..${offset + this.entries.length})`);
      }
      this.entries = [...this.entries.slice(0, keep), ...rd.entries];
    }
    if (rd.hardState) this.hardState = { ...rd.hardState };
  }

  lastIndex(): number {
    return (this.snapshot?.index ?? 0) + this.entries.length;
  }

  /** The driver took a state machine snapshot at meta.index: keep it and drop the entries it covers. */
  compact(meta: SnapshotMeta, data: AppliedCommand[]): void {
    this.entries = this.entries.filter((e) => e.index > meta.index);
    this.snapshot = meta;
    this.snapshotData = data;
  }
}

export class SimNode {
  core: RaftCore;
  readonly storage = new MemoryStorage();
  /** The state machine: every applied normal command, in order. */
  stateMachine: AppliedCommand[] = [];
  appliedIndex = 0;
  readStates: ReadState[] = [];
  /** Snapshot data received from a leader, waiting for the Ready that installs it. */
  readonly incomingSnapshots = new Map<number, AppliedCommand[]>();
  private readonly random: () => number;

  constructor(
    readonly id: NodeId,
    readonly initialMembership: Membership,
    readonly options: SimOptions,
  ) {
    this.random = mulberry32(options.seed * 7919 + hashId(id));
    this.core = this.makeCore({
      hardState: { term: 0, vote: '', commit: 0 },
      entries: [],
      initialMembership,
      applied: 0,
    });
  }

  private makeCore(restored: RaftRestoredState): RaftCore {
    const { seed, ...rest } = this.options;
    void seed;
    return new RaftCore({ ...rest, id: this.id, random: this.random }, restored);
  }

  /** Crash and recover: everything not persisted is lost; the state machine is rebuilt from the snapshot. */
  restart(): void {
    const s = this.storage;
    const restored: RaftRestoredState = {
      hardState: { ...s.hardState },
      entries: [...s.entries],
      initialMembership: this.initialMembership,
      applied: s.snapshot?.index ?? 0,
    };
    if (s.snapshot) restored.snapshot = s.snapshot;
    this.stateMachine = [...s.snapshotData];
    this.appliedIndex = s.snapshot?.index ?? 0;
    this.readStates = [];
    this.incomingSnapshots.clear();
    this.core = this.makeCore(restored);
  }
}

function hashId(id: string): number {
  let h = 0;
  for (const ch of id) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return h;
}

/** A message the network delivered or dropped, for tracing. */
export interface Delivery {
  message: Message;
  dropped?: string;
}

export class Network {
  readonly nodes = new Map<NodeId, SimNode>();
  /** Messages on the wire, in send order. */
  queue: Message[] = [];
  private readonly cuts = new Set<string>();
  /** Election safety: the leader of each term, as observed. */
  private readonly leaders = new Map<number, NodeId>();
  /** State machine safety: what was applied at each index, on any node. */
  private readonly appliedAt = new Map<number, string>();
  /** Snapshot data a driver streams with each snapshot message, captured when the message is sent. */
  private readonly snapshotData = new WeakMap<Message, AppliedCommand[]>();

  constructor(readonly defaults: SimOptions = DEFAULT_SIM_OPTIONS) {}

  /** A cluster of voters with ids `ids`, all bootstrapped with the same membership. */
  static create(ids: NodeId[], overrides: Partial<SimOptions> = {}): Network {
    const net = new Network({ ...DEFAULT_SIM_OPTIONS, ...overrides });
    for (const id of ids) net.addNode(id, { voters: [...ids], learners: [] });
    return net;
  }

  addNode(id: NodeId, initialMembership: Membership, overrides: Partial<SimOptions> = {}): SimNode {
    if (this.nodes.has(id)) throw new Error(`network: node ${id} already exists`);
    const node = new SimNode(id, initialMembership, { ...this.defaults, ...overrides });
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`network: no node ${id}`);
    return node;
  }

  core(id: NodeId): RaftCore {
    return this.node(id).core;
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()];
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.core(id).tick();
  }

  /** Handles one Ready of `id` like a correct driver; returns it (undefined when there was none). */
  processReady(id: NodeId): Ready | undefined {
    const node = this.node(id);
    const core = node.core;
    if (!core.hasReady()) return undefined;
    const rd = core.ready();
    node.storage.persist(rd, (index) => {
      const data = node.incomingSnapshots.get(index);
      if (data === undefined) throw new Error(`network: ${id} installs snapshot ${index} but never received its data`);
      return data;
    });
    for (const m of rd.messages) {
      if (m.type !== 'snapshot' || m.snapshot === undefined) continue;
      if (node.storage.snapshot?.index !== m.snapshot.index) {
        throw new Error(`network: ${id} sends snapshot ${m.snapshot.index} but stores ${String(node.storage.snapshot?.index)}`);
      }
      this.snapshotData.set(m, [...node.storage.snapshotData]);
    }
    this.queue.push(...rd.messages, ...rd.messagesAfterPersist);
    if (rd.snapshot) {
      node.stateMachine = [...node.storage.snapshotData];
      node.appliedIndex = rd.snapshot.index;
      node.incomingSnapshots.clear();
    }
    for (const e of rd.committedEntries) {
      if (e.index !== node.appliedIndex + 1) throw new Error(`network: ${id} applies ${e.index} after ${node.appliedIndex}`);
      node.appliedIndex = e.index;
      const seen = describeEntry(e);
      const before = this.appliedAt.get(e.index);
      if (before !== undefined && before !== seen) {
        throw new Error(`state machine safety violated at index ${e.index}: ${before} vs ${seen} (on ${id})`);
      }
      this.appliedAt.set(e.index, seen);
      if (e.type === 'normal') node.stateMachine.push({ index: e.index, term: e.term, text: text(e.data) });
    }
    node.readStates.push(...rd.readStates);
    core.advance();
    const status = core.status();
    if (status.role === 'leader') {
      const known = this.leaders.get(status.term);
      if (known !== undefined && known !== id) throw new Error(`election safety violated: ${known} and ${id} both lead term ${status.term}`);
      this.leaders.set(status.term, id);
    }
    return rd;
  }

  /** Why a message from → to would be dropped, if it would. */
  private blocked(m: Message): string | undefined {
    if (!this.nodes.has(m.to)) return 'no such node';
    if (this.cuts.has(`${m.from}|${m.to}`)) return 'partitioned';
    return undefined;
  }

  /**
   * Delivers the queued messages addressed to `to` (all recipients when omitted), in send order;
   * messages to `drop` are discarded. Messages sent while delivering stay queued for the next call.
   */
  deliver(options: { to?: NodeId[]; drop?: NodeId[]; filter?: (m: Message) => boolean } = {}): Delivery[] {
    const selected: Message[] = [];
    const kept: Message[] = [];
    for (const m of this.queue) {
      if (options.to === undefined || options.to.includes(m.to)) selected.push(m);
      else kept.push(m);
    }
    this.queue = kept;
    const out: Delivery[] = [];
    for (const m of selected) {
      let dropped = this.blocked(m);
      if (dropped === undefined && options.drop?.includes(m.to)) dropped = 'dropped';
      if (dropped === undefined && options.filter !== undefined && !options.filter(m)) dropped = 'dropped';
      if (dropped !== undefined) {
        out.push({ message: m, dropped });
        if (m.type === 'snapshot') this.nodes.get(m.from)?.core.reportSnapshot(m.to, false);
        continue;
      }
      out.push({ message: m });
      this.receive(m);
    }
    return out;
  }

  private receive(m: Message): void {
    const node = this.node(m.to);
    if (m.type === 'snapshot' && m.snapshot) {
      // The driver streams the sender's snapshot data alongside the message.
      const data = this.snapshotData.get(m);
      if (data === undefined) throw new Error(`network: snapshot message from ${m.from} without data`);
      node.incomingSnapshots.set(m.snapshot.index, [...data]);
      node.core.step(m);
      this.nodes.get(m.from)?.core.reportSnapshot(m.to, true);
      return;
    }
    node.core.step(m);
  }

  /**
   * Runs Readies and deliveries until nothing moves (no ticks happen meanwhile). `onEvent` sees
   * each Ready and each batch of deliveries, for tracing.
   */
  stabilize(
    ids: NodeId[] = this.ids(),
    onEvent?: (e: { kind: 'ready'; id: NodeId; ready: Ready } | { kind: 'deliver'; id: NodeId; deliveries: Delivery[] }) => void,
  ): void {
    for (let round = 0; ; round++) {
      if (round > 10_000) throw new Error('network: stabilize does not converge');
      let moved = false;
      for (const id of ids) {
        const rd = this.processReady(id);
        if (rd !== undefined) {
          moved = true;
          onEvent?.({ kind: 'ready', id, ready: rd });
        }
      }
      const unknown = [...new Set(this.queue.map((m) => m.to).filter((to) => !this.nodes.has(to)))];
      for (const id of [...ids, ...unknown]) {
        if (!this.queue.some((m) => m.to === id)) continue;
        moved = true;
        const deliveries = this.deliver({ to: [id] });
        onEvent?.({ kind: 'deliver', id, deliveries });
      }
      // Messages to known nodes outside `ids` stay queued.
      if (!moved) return;
    }
  }

  /** Cuts every link between the groups (both directions). */
  partition(...groups: NodeId[][]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.cuts.add(`${x}|${y}`);
      }
    }
  }

  /** Cuts `id` off from every other node. */
  isolate(id: NodeId): void {
    this.partition([id], this.ids().filter((other) => other !== id));
  }

  /** Cuts only the link from → to. */
  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}|${to}`);
  }

  heal(): void {
    this.cuts.clear();
  }

  /** Takes a state machine snapshot on `id` at `index` and compacts its log, like a driver would. */
  compact(id: NodeId, index: number): void {
    const node = this.node(id);
    // A serial driver handles the pending Ready (maybe a snapshot from the leader) before it
    // snapshots the state machine.
    this.processReady(id);
    if (index > node.appliedIndex) throw new Error(`network: ${id} has applied only ${node.appliedIndex}, not ${index}`);
    if (index <= (node.storage.snapshot?.index ?? 0)) return; // nothing new to fold in
    const meta = node.core.snapshotMetaAt(index);
    node.storage.compact(
      meta,
      node.stateMachine.filter((c) => c.index <= index),
    );
    node.core.compact(index);
  }

  /** Replaces what `id` has on disk (as if it had run before) and restarts it from there. */
  preload(id: NodeId, entries: Entry[], hardState: HardState): void {
    const node = this.node(id);
    node.storage.entries = [...entries];
    node.storage.hardState = { ...hardState };
    node.restart();
  }

  restart(id: NodeId): void {
    // Messages already on the wire stay there; what the old core had not handed out is lost.
    this.node(id).restart();
  }

  /** The unique leader among the nodes that believe they lead in the highest term, if any. */
  leader(): NodeId | undefined {
    let best: { id: NodeId; term: number } | undefined;
    for (const [id, node] of this.nodes) {
      const s = node.core.status();
      if (s.role === 'leader' && (best === undefined || s.term > best.term)) best = { id, term: s.term };
    }
    return best?.id;
  }

  /** Campaigns on `id` and stabilizes. */
  elect(id: NodeId): void {
    this.core(id).campaign();
    this.stabilize();
  }

  propose(id: NodeId, command: string): ReturnType<RaftCore['propose']> {
    return this.core(id).propose(new TextEncoder().encode(command));
  }

  /** Applied normal commands of `id`, as text. */
  applied(id: NodeId): string[] {
    return this.node(id).stateMachine.map((c) => c.text);
  }

  describeQueue(): string[] {
    return this.queue.map(describeMessage);
  }
}
