// One simulated server: the production RaftCore, driven by a serial driver that follows the
// contract in core.ts's header with an asynchronous disk:
//
//   ready()  → write the record (snapshot, entries, HardState) to the disk, unsynced;
//              send rd.messages at once (nothing in them depends on the write);
//   …fsync completes some ticks later (meanwhile ticks, messages and proposals keep being fed;
//              a leader applies at once what an acknowledgement fed meanwhile commits of entries
//              durable before this Ready, core.applyCommittedSinceReady, as the production driver
//              does) → the record is durable; send rd.messagesAfterPersist; install rd.snapshot;
//              apply the rest of rd.committedEntries (those durable before the Ready were applied
//              when it was handed out); hand out rd.readStates; advance().
//   Between Readies, at random moments, it snapshots the state machine and compacts the log.
//
// A crash drops everything in memory (core, state machine, pending client requests) and leaves the
// disk as storage.ts describes; a restart rebuilds the core from what the disk recovered.
//
// Clients talk to the server: writes are proposed and answered when their entry is applied (the
// entry at the proposed index must have the proposed term and carry the client's request id);
// gets go through ReadIndex and are answered once the state machine has applied up to the read
// index. Driver flaws (DriverFlaw) break that contract on purpose, to show the checkers catch it.
import type { RaftCore, RaftCoreOptions } from '../raft/core.js';
import type { Entry, Membership, Message, NodeId, RaftRestoredState, RaftStatus, Ready } from '../raft/types.js';
import { CheckFailure, stateHash, type LogView, type SafetyCheckers } from './checkers.js';
import { KvStateMachine, decodeCommand, encodeCommand, type KvSnapshotData } from './kv.js';
import type { ClientReply, ClientRequest } from './network.js';
import { SimDisk, type CrashFate, type WalRecord } from './storage.js';
import type { Trace } from './trace.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Builds the core of a server: the production RaftCore, or a deliberately broken wrapper in tests. */
export type CoreFactory = (options: RaftCoreOptions, restored: RaftRestoredState) => RaftCore;

/**
 * Deliberate driver bugs, for the simulator's own tests (a checker that never fires proves nothing):
 * - 'ack-before-persist': messagesAfterPersist leave with rd.messages, before the fsync;
 * - 'read-without-read-index': gets are answered from the local state machine at once.
 */
export type DriverFlaw = 'ack-before-persist' | 'read-without-read-index';

/** What a server needs from the world around it. */
export interface ServerHost {
  readonly now: number;
  readonly trace: Trace;
  readonly checkers: SafetyCheckers;
  sendRaft(from: SimServer, m: Message): void;
  reply(from: SimServer, reply: ClientReply): void;
  /** Ticks the next fsync takes. */
  fsyncDelay(): number;
  /** Whether to snapshot and compact now. */
  shouldCompact(): boolean;
  /** Where a torn record is cut (storage.ts). */
  tornCut(length: number): number;
}

export interface ServerStats {
  readies: number;
  compactions: number;
  snapshotsInstalled: number;
  restarts: number;
  tornRecordsDropped: number;
  unsyncedRecordsKept: number;
  /** Entries a leader applied while writing a later Ready (core.applyCommittedSinceReady). */
  appliedDuringWrite: number;
}

interface PendingWrite {
  term: number;
  client: string;
  request: number;
}

interface PendingRead {
  client: string;
  request: number;
  key: string;
  /** Set once the ReadState arrived: the read may be served when applied ≥ index. */
  index: number | undefined;
}

export class SimServer {
  alive = true;
  /** Shut down for good (removed from the group at the end of a run). */
  retired = false;
  incarnation = 0;
  core: RaftCore;
  readonly disk = new SimDisk();
  applied = 0;
  readonly stats: ServerStats = {
    readies: 0,
    compactions: 0,
    snapshotsInstalled: 0,
    restarts: 0,
    tornRecordsDropped: 0,
    unsyncedRecordsKept: 0,
    appliedDuringWrite: 0,
  };
  private kv = new KvStateMachine();
  /** The Ready being written; `appliedEarly`: how many of its committed entries were applied at hand-out. */
  private syncing: { rd: Ready; at: number; durableUpTo: number; appliedEarly: number } | undefined;
  private readonly proposals = new Map<number, PendingWrite>();
  private readonly reads = new Map<string, PendingRead>();
  /** Snapshot data streamed with snapshot messages, by snapshot index, until a Ready installs it. */
  private readonly incomingSnapshots = new Map<number, KvSnapshotData>();
  /** A snapshot message was stepped since the last ready(): the core may hold a pending snapshot. */
  private snapshotStepped = false;
  /** The latest term in which this server was checked for leader completeness. */
  private leaderTermChecked = 0;

  constructor(
    readonly id: NodeId,
    /** The membership a founding server starts from; empty for one that joins later. */
    private readonly bootstrap: Membership,
    private readonly coreOptions: Omit<RaftCoreOptions, 'id'>,
    private readonly makeCore: CoreFactory,
    private readonly host: ServerHost,
    private readonly flaw: DriverFlaw | undefined,
  ) {
    this.core = this.makeCore(
      { ...this.coreOptions, id },
      { hardState: { term: 0, vote: '', commit: 0 }, entries: [], initialMembership: bootstrap, applied: 0 },
    );
  }

  // ───────────── inputs ─────────────

  tick(): void {
    this.core.tick();
    this.observe();
  }

  receive(m: Message, snapshotData: KvSnapshotData | undefined): void {
    if (m.type === 'snapshot' && m.snapshot !== undefined) {
      if (snapshotData === undefined) throw new Error(`sim: snapshot message ${m.from}->${m.to} arrived without its data`);
      this.incomingSnapshots.set(m.snapshot.index, snapshotData);
      this.snapshotStepped = true;
    }
    this.core.step(m);
    // As the production driver does while a leader writes: apply what an acknowledgement commits
    // of the entries that were durable before the Ready in hand.
    if (this.syncing !== undefined && m.type === 'append_response' && !m.reject) {
      const early = this.core.applyCommittedSinceReady(this.applied, this.syncing.durableUpTo);
      for (const e of early) this.apply(e);
      this.stats.appliedDuringWrite += early.length;
      if (early.length > 0) this.serveReads();
    }
    const status = this.observe();
    if (m.type === 'read_index' && m.context !== undefined && status.role === 'leader') {
      this.host.checkers.onReadReceived(this.id, decoder.decode(m.context), status.term, this.host.now);
    }
  }

  onRequest(request: ClientRequest): void {
    const { client, input } = request;
    const tag = { client, request: request.request };
    if (input.op === 'get') {
      if (this.flaw === 'read-without-read-index') {
        this.host.reply(this, { ...tag, kind: 'ok', output: this.kv.get(input.key) });
        return;
      }
      const context = `${client}/${request.request}`;
      const result = this.core.readIndex(encoder.encode(context));
      const status = this.observe();
      if (result.kind === 'not_leader') {
        this.host.reply(this, { ...tag, kind: 'rejected', leaderHint: result.leaderId });
        return;
      }
      if (status.role === 'leader') this.host.checkers.onReadReceived(this.id, context, status.term, this.host.now);
      this.reads.set(context, { client, request: request.request, key: input.key, index: undefined });
      return;
    }
    const result = this.core.propose(encodeCommand({ client, request: request.request, write: input }));
    this.observe();
    switch (result.kind) {
      case 'not_leader':
        this.host.reply(this, { ...tag, kind: 'rejected', leaderHint: result.leaderId });
        return;
      case 'dropped':
        this.host.reply(this, { ...tag, kind: 'rejected', leaderHint: '' });
        return;
      case 'accepted': {
        const displaced = this.proposals.get(result.index);
        if (displaced !== undefined) this.host.reply(this, { client: displaced.client, request: displaced.request, kind: 'lost' });
        this.proposals.set(result.index, { term: result.term, client, request: request.request });
        return;
      }
    }
  }

  /** Election safety is checked after every input to the core (and the commit index tracked). */
  observe(): RaftStatus {
    const status = this.core.status();
    const checkers = this.host.checkers;
    if (status.role === 'leader') checkers.onLeader(this.id, status.term, this.host.now);
    checkers.onCommit(status.commit);
    return status;
  }

  // ───────────── the driver loop ─────────────

  /** Hands out Readies while the disk is idle; fsyncs that take no time complete at once. */
  pump(): void {
    for (let round = 0; round < 8; round++) {
      if (!this.alive || this.syncing !== undefined || !this.core.hasReady()) return;
      const rd = this.core.ready();
      // Every earlier record is synced (no Ready is handed out while one is being written).
      const durableUpTo = Math.min(this.disk.lastIndex(), (rd.entries[0]?.index ?? Infinity) - 1);
      this.handOut(rd);
      // Committed entries durable before this Ready are applied now, before the write, as the
      // production driver does (core.ts allows it when no snapshot is to be installed).
      let appliedEarly = 0;
      if (rd.snapshot === undefined) {
        while (appliedEarly < rd.committedEntries.length && rd.committedEntries[appliedEarly]!.index <= durableUpTo) this.apply(rd.committedEntries[appliedEarly++]!);
        if (appliedEarly > 0) this.serveReads();
      }
      const delay = this.host.fsyncDelay();
      this.syncing = { rd, at: this.host.now + delay, durableUpTo, appliedEarly };
      if (delay > 0) return;
      this.completeSync();
    }
  }

  /** Completes the fsync in progress if it is due. */
  syncIfDue(): void {
    if (this.alive && this.syncing !== undefined && this.syncing.at <= this.host.now) this.completeSync();
  }

  private handOut(rd: Ready): void {
    this.snapshotStepped = false;
    this.stats.readies++;
    const status = this.core.status();
    if (status.role === 'leader' && status.term > this.leaderTermChecked) {
      this.leaderTermChecked = status.term;
      this.host.checkers.onNewLeader(this.id, status.term, this.logView(rd));
    }
    const record: WalRecord = { entries: rd.entries };
    if (rd.hardState !== undefined) record.hardState = rd.hardState;
    if (rd.snapshot !== undefined) {
      const data = this.incomingSnapshots.get(rd.snapshot.index);
      if (data === undefined) throw new Error(`sim: ${this.id} installs snapshot ${rd.snapshot.index} but never received its data`);
      record.snapshot = { meta: rd.snapshot, data };
    }
    this.disk.write(record);
    const host = this.host;
    host.trace.event(host.now, this.id, 'ready', () => this.describeReady(rd));
    host.checkers.onCommitted(this.id, rd.committedEntries);
    // Read index answers: the leader's own reads, and those forwarded by followers.
    for (const rs of rd.readStates) host.checkers.onReadAnswered(this.id, decoder.decode(rs.context), rs.index);
    for (const m of rd.messages) {
      if (m.type === 'read_index_response' && m.context !== undefined) {
        host.checkers.onReadAnswered(this.id, decoder.decode(m.context), m.index);
      }
      host.sendRaft(this, m);
    }
    if (this.flaw === 'ack-before-persist') for (const m of rd.messagesAfterPersist) this.sendAfterPersist(m);
  }

  private completeSync(): void {
    const syncing = this.syncing;
    if (syncing === undefined) return;
    this.syncing = undefined;
    const { rd } = syncing;
    const record = this.disk.sync();
    const checkers = this.host.checkers;
    checkers.onDurableEntries(this.id, record.entries, this.disk);
    const disk = this.disk;
    this.host.trace.event(this.host.now, this.id, 'synced', () => `durable through ${disk.lastIndex()}, term ${disk.hardState.term}`);
    if (this.flaw !== 'ack-before-persist') for (const m of rd.messagesAfterPersist) this.sendAfterPersist(m);
    if (record.snapshot !== undefined) this.installSnapshot(record.snapshot.meta.index, record.snapshot.data);
    for (const e of rd.committedEntries.slice(syncing.appliedEarly)) this.apply(e);
    for (const rs of rd.readStates) {
      const read = this.reads.get(decoder.decode(rs.context));
      if (read !== undefined) read.index = rs.index;
    }
    this.serveReads();
    this.core.advance();
    this.observe();
    if (this.host.shouldCompact()) this.compact();
  }

  private sendAfterPersist(m: Message): void {
    this.host.checkers.onSendAfterPersist(this.id, m, this.disk);
    this.host.sendRaft(this, m);
  }

  private installSnapshot(index: number, data: KvSnapshotData): void {
    this.kv.restore(data);
    this.host.checkers.onState(this.id, index, stateHash(data), 'installing a snapshot at');
    this.applied = index;
    this.stats.snapshotsInstalled++;
    for (const i of [...this.incomingSnapshots.keys()]) if (i <= index) this.incomingSnapshots.delete(i);
    // Writes proposed here at or below the snapshot: whether they made it is not known any more.
    for (const [i, pending] of [...this.proposals]) {
      if (i > index) continue;
      this.proposals.delete(i);
      this.host.reply(this, { client: pending.client, request: pending.request, kind: 'lost' });
    }
    this.host.trace.event(this.host.now, this.id, 'install', () => `snapshot at ${index}`);
  }

  private apply(e: Entry): void {
    if (e.index !== this.applied + 1) throw new Error(`sim: ${this.id} is handed entry ${e.index} to apply after ${this.applied}`);
    const command = e.type === 'normal' ? decodeCommand(e.data) : undefined;
    const output = command === undefined ? undefined : this.kv.apply(command.write, e.index);
    this.applied = e.index;
    this.host.checkers.onApply(this.id, e, stateHash(this.kv.snapshot()));
    const pending = this.proposals.get(e.index);
    if (pending === undefined) return;
    this.proposals.delete(e.index);
    if (pending.term !== e.term || command === undefined || output === undefined) {
      // Another leader's entry took the index: ours was overwritten and can never commit.
      this.host.reply(this, { client: pending.client, request: pending.request, kind: 'lost' });
      return;
    }
    if (command.client !== pending.client || command.request !== pending.request) {
      throw new CheckFailure(
        'client matching',
        `${this.id} proposed ${pending.client}#${pending.request} at ${e.term}/${e.index} ` +
          `but applies ${command.client}#${command.request} there`,
      );
    }
    this.host.reply(this, { client: pending.client, request: pending.request, kind: 'ok', output });
  }

  private serveReads(): void {
    for (const [context, read] of this.reads) {
      if (read.index === undefined || read.index > this.applied) continue;
      this.reads.delete(context);
      this.host.reply(this, { client: read.client, request: read.request, kind: 'ok', output: this.kv.get(read.key) });
    }
  }

  /** Snapshots the state machine at the applied index and compacts the log up to it. */
  private compact(): void {
    // A snapshot stepped since the last Ready may be pending in the core: the driver handles
    // that Ready first (core.ts, snapshotMetaAt).
    if (this.snapshotStepped || this.syncing !== undefined) return;
    const index = this.applied;
    if (index < this.disk.firstIndex()) return;
    const meta = this.core.snapshotMetaAt(index);
    const data = this.kv.snapshot();
    this.host.checkers.onState(this.id, index, stateHash(data), 'snapshotting at');
    this.disk.compact({ meta, data });
    this.core.compact(index);
    this.stats.compactions++;
    this.host.trace.event(this.host.now, this.id, 'compact', () => `snapshot ${meta.term}/${index}`);
  }

  // ───────────── crash and restart ─────────────

  crash(fate: CrashFate): void {
    this.alive = false;
    const unsynced = this.syncing !== undefined;
    this.syncing = undefined;
    this.disk.crash(fate, (length) => this.host.tornCut(length));
    this.proposals.clear();
    this.reads.clear();
    this.incomingSnapshots.clear();
    this.host.trace.event(this.host.now, this.id, 'crash', unsynced ? `unsynced record ${fate}` : 'nothing unsynced');
  }

  restart(): void {
    const report = this.disk.recover();
    if (report.truncatedBytes > 0) this.stats.tornRecordsDropped++;
    if (report.keptUnsynced) this.stats.unsyncedRecordsKept++;
    const disk = this.disk;
    const snapshot = disk.snapshot;
    const restored: RaftRestoredState = {
      hardState: { ...disk.hardState },
      entries: [...disk.entries],
      initialMembership: this.bootstrap,
      applied: snapshot?.meta.index ?? 0,
    };
    if (snapshot !== undefined) restored.snapshot = snapshot.meta;
    this.kv = new KvStateMachine();
    if (snapshot !== undefined) this.kv.restore(snapshot.data);
    this.applied = snapshot?.meta.index ?? 0;
    this.snapshotStepped = false;
    this.core = this.makeCore({ ...this.coreOptions, id: this.id }, restored);
    this.incarnation++;
    this.alive = true;
    this.stats.restarts++;
    this.host.trace.event(this.host.now, this.id, 'restart', () => {
      const torn = report.truncatedBytes > 0 ? `, dropped a torn record of ${report.truncatedBytes} bytes` : '';
      const kept = report.keptUnsynced ? ', kept a whole unsynced record' : '';
      return `term ${disk.hardState.term} vote ${disk.hardState.vote || '-'} log ${disk.firstIndex()}..${disk.lastIndex()}${torn}${kept}`;
    });
  }

  /** Shuts the server down for good (an operator decommissioning a removed member). */
  retire(): void {
    if (this.alive) this.crash('lost');
    this.retired = true;
  }

  describe(): string {
    const disk = this.disk;
    if (!this.alive) return `${this.id}: ${this.retired ? 'retired' : 'down'} (disk term ${disk.hardState.term}, log ..${disk.lastIndex()})`;
    const s = this.core.status();
    const learners = s.membership.learners.length > 0 ? ` learners=(${s.membership.learners.join(' ')})` : '';
    return (
      `${this.id}: ${s.role} term ${s.term} leader ${s.leaderId || '-'} commit ${s.commit} applied ${this.applied} ` +
      `log ${s.firstIndex}..${s.lastIndex} voters=(${s.membership.voters.join(' ')})${learners}`
    );
  }

  private logView(rd: Ready): LogView {
    const disk = this.disk;
    const first = rd.entries[0]?.index ?? Number.POSITIVE_INFINITY;
    const last = rd.entries.at(-1)?.index;
    return {
      snapshotIndex: (disk.snapshot?.meta.index ?? 0),
      lastIndex: last ?? disk.lastIndex(),
      entryAt: (index) => (index >= first ? rd.entries[index - first] : disk.entryAt(index)),
    };
  }

  private describeReady(rd: Ready): string {
    const parts: string[] = [];
    if (rd.softState) parts.push(`${rd.softState.role}${rd.softState.leaderId ? ` leader=${rd.softState.leaderId}` : ''}`);
    if (rd.hardState) parts.push(`hs=${rd.hardState.term}/${rd.hardState.vote || '-'}/${rd.hardState.commit}`);
    if (rd.snapshot) parts.push(`snapshot=${rd.snapshot.term}/${rd.snapshot.index}`);
    if (rd.entries.length > 0) parts.push(`persist ${rd.entries[0]?.index}..${rd.entries.at(-1)?.index}`);
    if (rd.committedEntries.length > 0) parts.push(`apply ${rd.committedEntries[0]?.index}..${rd.committedEntries.at(-1)?.index}`);
    const sends = rd.messages.length + rd.messagesAfterPersist.length;
    if (sends > 0) parts.push(`send ${rd.messages.length}+${rd.messagesAfterPersist.length}`);
    if (rd.readStates.length > 0) parts.push(`reads ${rd.readStates.length}`);
    return parts.join(' ');
  }
}
