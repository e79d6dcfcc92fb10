// Simulated clients. Each runs one operation at a time against the server it believes leads (its
// last hint, else a random server; now and then a random one anyway), over the lossy network,
// with a timeout in ticks, and records every operation in a lincheck HistoryRecorder on the
// simulated clock:
//   invoke at the tick it is sent;
//   ok(output) at the tick the reply arrives, the output being what the state machine computed
//     when it applied the entry (writes) or what the local state machine held once the read was
//     safe (gets);
//   discard when the server refused it definitely (not leader, or proposal dropped before it was
//     appended: it never reaches the log);
//   unknown on timeout, or when the server lost track of it (its entry was overwritten or
//     skipped by a snapshot install): it may or may not have taken effect.
// Each write carries the client's id and a request number that the server matches, with the index
// and term it was proposed at, against the entry it applies (server.ts).
import type { HistoryRecorder, KvInput, KvOutput, OperationId } from '@concord/lincheck';
import type { NodeId } from '../raft/types.js';
import type { ProbeOutcome } from './nemesis.js';
import type { ClientReply, ClientRequest } from './network.js';
import type { SimRng } from './rng.js';

export type KvRecorder = HistoryRecorder<KvInput, KvOutput>;

export interface ClientSettings {
  keys: readonly string[];
  /** Ticks a client waits for a reply before it records the outcome as unknown. */
  timeoutTicks: number;
  /** Pause between operations, in ticks. */
  thinkTicks: readonly [number, number];
  /**
   * Chance that an operation goes to a random server instead of the believed leader (a client
   * behind a load balancer, or with a stale server list): reads then take the follower ReadIndex
   * path, and deposed leaders keep getting requests.
   */
  wanderRate: number;
}

export interface ClientWorld {
  readonly now: number;
  /** While set, clients put off their next write (a nemesis wants the logs to stand still). */
  readonly writesHeld?: boolean;
  serverIds(): readonly NodeId[];
  sendRequest(from: string, to: NodeId, request: ClientRequest): void;
}

export interface ClientStats {
  invoked: number;
  ok: number;
  unknown: number;
  discarded: number;
}

interface InFlight {
  op: OperationId;
  request: number;
  input: KvInput;
  target: NodeId;
  deadline: number;
}

export class SimClient {
  private leaderHint: NodeId | undefined;
  private inflight: InFlight | undefined;
  private nextAt: number;
  private requests = 0;
  private values = 0;
  /** A write drawn while writes were held, sent once they are not. */
  private deferred: KvInput | undefined;
  /** The latest version this client saw per key (0: absent), for its compare-and-sets. */
  private readonly versions = new Map<string, number>();
  readonly stats: ClientStats = { invoked: 0, ok: 0, unknown: 0, discarded: 0 };
  /** For a scripted client: set once one of its operations succeeded. */
  succeeded = false;

  constructor(
    readonly id: string,
    private readonly rng: SimRng,
    private readonly settings: ClientSettings,
    private readonly recorder: KvRecorder,
    /** A scripted client repeats this operation until it succeeds, then stops. */
    private readonly script?: () => KvInput,
    startAt = 0,
  ) {
    this.nextAt = startAt + rng.between(settings.thinkTicks[0], settings.thinkTicks[1]);
  }

  get busy(): boolean {
    return this.inflight !== undefined;
  }

  /** Whether a write of this client is in flight. */
  get writing(): boolean {
    return this.inflight !== undefined && this.inflight.input.op !== 'get';
  }

  tick(world: ClientWorld): void {
    const now = world.now;
    const current = this.inflight;
    if (current !== undefined) {
      if (now < current.deadline) return;
      this.recorder.unknown(current.op);
      this.stats.unknown++;
      this.inflight = undefined;
      this.leaderHint = undefined;
      this.nextAt = now;
    }
    if (now < this.nextAt || (this.script !== undefined && this.succeeded)) return;
    const input = this.deferred ?? (this.script !== undefined ? this.script() : this.nextInput());
    this.deferred = undefined;
    if (world.writesHeld === true && input.op !== 'get' && this.script === undefined) {
      this.deferred = input;
      return;
    }
    const servers = world.serverIds();
    const hint = this.leaderHint !== undefined && servers.includes(this.leaderHint) ? this.leaderHint : undefined;
    const target = hint === undefined || this.rng.chance(this.settings.wanderRate) ? this.rng.pick(servers) : hint;
    const request = ++this.requests;
    const op = this.recorder.invoke(this.id, input);
    this.stats.invoked++;
    this.inflight = { op, request, input, target, deadline: now + this.settings.timeoutTicks };
    world.sendRequest(this.id, target, { client: this.id, request, input });
  }

  onReply(reply: ClientReply, now: number): void {
    const current = this.inflight;
    if (current === undefined || reply.request !== current.request) return; // late: already timed out
    this.inflight = undefined;
    switch (reply.kind) {
      case 'ok':
        this.recorder.ok(current.op, reply.output);
        this.stats.ok++;
        this.learnVersion(current.input, reply.output);
        this.leaderHint = current.target;
        if (this.script !== undefined) this.succeeded = true;
        this.nextAt = now + this.rng.between(this.settings.thinkTicks[0], this.settings.thinkTicks[1]);
        return;
      case 'rejected':
        this.recorder.discard(current.op);
        this.stats.discarded++;
        this.leaderHint = reply.leaderHint === '' ? undefined : reply.leaderHint;
        this.nextAt = now + this.rng.int(2);
        return;
      case 'lost':
        this.recorder.unknown(current.op);
        this.stats.unknown++;
        this.nextAt = now;
        return;
    }
  }

  private nextInput(): KvInput {
    const key = this.rng.pick(this.settings.keys);
    const roll = this.rng.next();
    if (roll < 0.35) return { op: 'get', key };
    const value = `${this.id}.${++this.values}`;
    if (roll < 0.65) return { op: 'put', key, value };
    const known = this.versions.get(key) ?? 0;
    if (roll < 0.85) {
      // Mostly the version last seen (which may be stale by now), sometimes a wrong guess.
      const expectedVersion = this.rng.chance(0.8) ? known : this.rng.int(known + 3);
      return { op: 'cas', key, expectedVersion, value };
    }
    return this.rng.chance(0.3) ? { op: 'delete', key, expectedVersion: known } : { op: 'delete', key };
  }

  private learnVersion(input: KvInput, output: KvOutput): void {
    const out = output as { found?: boolean; ok?: boolean; version?: number };
    switch (input.op) {
      case 'get':
        this.versions.set(input.key, out.found === true ? (out.version ?? 0) : 0);
        break;
      case 'put':
      case 'cas':
        if (out.version !== undefined) this.versions.set(input.key, out.version);
        break;
      case 'delete':
        this.versions.set(input.key, out.ok === true ? 0 : (out.version ?? 0));
        break;
    }
  }
}

/**
 * A client a nemesis steers (stale-lease.ts): one operation at a time, sent to the server the
 * nemesis names, recorded in the same history as every other client's. Its outcome is what the
 * nemesis waits for before its next move.
 */
export class ProbeClient {
  readonly id = 'probe';
  readonly stats: ClientStats = { invoked: 0, ok: 0, unknown: 0, discarded: 0 };
  outcome: ProbeOutcome = { kind: 'failed', at: 0 };
  private inflight: { op: OperationId; request: number; deadline: number } | undefined;
  private requests = 0;

  constructor(
    private readonly recorder: KvRecorder,
    private readonly timeoutTicks: number,
  ) {}

  start(world: ClientWorld, target: NodeId, input: KvInput): void {
    if (this.inflight !== undefined) this.giveUp(world.now);
    const request = ++this.requests;
    const op = this.recorder.invoke(this.id, input);
    this.stats.invoked++;
    this.inflight = { op, request, deadline: world.now + this.timeoutTicks };
    this.outcome = { kind: 'pending' };
    world.sendRequest(this.id, target, { client: this.id, request, input });
  }

  tick(world: ClientWorld): void {
    if (this.inflight !== undefined && world.now >= this.inflight.deadline) this.giveUp(world.now);
  }

  onReply(reply: ClientReply, now: number): void {
    const current = this.inflight;
    if (current === undefined || reply.request !== current.request) return;
    this.inflight = undefined;
    switch (reply.kind) {
      case 'ok':
        this.recorder.ok(current.op, reply.output);
        this.stats.ok++;
        this.outcome = { kind: 'ok', output: reply.output, at: now };
        return;
      case 'rejected':
        this.recorder.discard(current.op);
        this.stats.discarded++;
        this.outcome = { kind: 'failed', at: now };
        return;
      case 'lost':
        this.recorder.unknown(current.op);
        this.stats.unknown++;
        this.outcome = { kind: 'failed', at: now };
        return;
    }
  }

  private giveUp(now: number): void {
    if (this.inflight === undefined) return;
    this.recorder.unknown(this.inflight.op);
    this.stats.unknown++;
    this.inflight = undefined;
    this.outcome = { kind: 'failed', at: now };
  }
}
