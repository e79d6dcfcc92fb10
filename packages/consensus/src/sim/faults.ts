// The faults of a run, all drawn from its seed. A FaultProfile fixes the intensities once per run
// (a calm seed and a hostile one both occur); the FaultInjector then decides, tick by tick during
// the safety phase, when to partition and heal the network, crash, pause and restart servers,
// change the membership and move leadership. Like Jepsen's nemeses, crashes and partitions often
// aim at the current leader: that is where the interesting histories are (a deposed leader with
// entries nobody else has, a new leader that does not yet know what was committed).
// Message-level faults (loss, duplication, delay and so reordering) are the network's (network.ts);
// crashes that lose unsynced writes or tear the last one are the disk's (storage.ts); the injector
// only decides when a crash happens and what it does to the disk.
import type { Membership, MembershipChange, NodeId } from '../raft/types.js';
import type { LinkProfile } from './network.js';
import type { SimRng } from './rng.js';
import type { CrashFate } from './storage.js';

export interface FaultProfile {
  links: LinkProfile;
  /** Chance per tick that a partition starts while none is in force. */
  partitionRate: number;
  /** How long a partition lasts, in ticks. */
  partitionTicks: readonly [number, number];
  /** Chance per tick that a server crashes. */
  crashRate: number;
  /** Chance that a crash or an isolating partition picks the current leader rather than any server. */
  leaderBias: number;
  /**
   * Chance per tick that a running server is paused (a stopped process, a long GC): it neither
   * ticks nor handles anything, and what arrives meanwhile waits for it. 0 in lease mode, for the
   * same reason as clockDrift.
   */
  pauseRate: number;
  pauseTicks: readonly [number, number];
  /** How long a crashed server stays down, in ticks. */
  downTicks: readonly [number, number];
  /** Relative weights of what a crash does to a written but unsynced record. */
  crashFates: Readonly<Record<CrashFate, number>>;
  /** How long an fsync takes, in ticks (0: it completes within the tick). */
  fsyncTicks: readonly [number, number];
  /** Chance, each time a Ready's fsync completes, that the server snapshots and compacts its log. */
  compactionRate: number;
  /** Chance per tick that the leader proposes a membership change. */
  membershipRate: number;
  /** Chance per tick that the leader hands leadership to another voter. */
  transferRate: number;
  /**
   * Clock drift: each server's clock runs at a rate drawn once from [1 − clockDrift, 1]. A jittery
   * clock ticks each tick with that probability, so it also wanders over short stretches; a steady
   * one ticks at exactly that rate (over any stretch of ticks, within one of rate × length). Lease
   * seeds get steady clocks whose drift stays within what the lease tolerates (config.ts:
   * leaseSafetyMarginTicks ≥ 1 tick + drift × electionTicks), sometimes right at that bound.
   */
  clockDrift: number;
  clockJitter: boolean;
}

export interface ProfileOptions {
  electionTicks: number;
  lease: boolean;
  /** Lease seeds: the largest drift the leader lease tolerates. */
  leaseDriftBound: number;
}

export function drawFaultProfile(rng: SimRng, options: ProfileOptions): FaultProfile {
  const e = options.electionTicks;
  const maxLatency = rng.pick([1, 1, 2, 3, 4]);
  return {
    links: {
      lossRate: rng.pick([0, 0.01, 0.03, 0.08, 0.15]),
      duplicateRate: rng.pick([0, 0.01, 0.05]),
      maxLatency,
      longDelayRate: rng.pick([0, 0.005, 0.02]),
      longDelayTicks: rng.between(e, 4 * e),
    },
    partitionRate: rng.pick([0, 0.002, 0.005, 0.01]),
    partitionTicks: [e, rng.between(3 * e, 12 * e)],
    crashRate: rng.pick([0, 0.001, 0.003, 0.006, 0.015]),
    leaderBias: rng.pick([0, 0.5, 0.8]),
    pauseRate: options.lease ? 0 : rng.pick([0, 0, 0.002, 0.01]),
    pauseTicks: [1, rng.between(e, 4 * e)],
    downTicks: [1, rng.between(2 * e, 10 * e)],
    crashFates: { lost: 2, whole: 1, 'torn-short': 1, 'torn-zeroed': 1 },
    fsyncTicks: [0, rng.pick([0, 1, 2, 4])],
    compactionRate: rng.pick([0, 0.01, 0.05, 0.2]),
    membershipRate: rng.pick([0, 0.002, 0.005, 0.01]),
    transferRate: rng.pick([0, 0, 0.001, 0.003]),
    clockDrift: options.lease ? rng.pick([0, 0.5, 1]) * options.leaseDriftBound : rng.pick([0, 0.1, 0.3]),
    clockJitter: !options.lease,
  };
}

export function describeProfile(p: FaultProfile): string {
  const l = p.links;
  const drift = `${p.clockDrift.toFixed(3)}${p.clockJitter ? ' (jitter)' : ''}`;
  return [
    `loss=${l.lossRate} dup=${l.duplicateRate} latency=1..${l.maxLatency} long-delay=${l.longDelayRate}/${l.longDelayTicks}t`,
    `partitions=${p.partitionRate} crashes=${p.crashRate} leader-bias=${p.leaderBias} pauses=${p.pauseRate}`,
    `fsync=${p.fsyncTicks[0]}..${p.fsyncTicks[1]}t compaction=${p.compactionRate} membership=${p.membershipRate}`,
    `transfer=${p.transferRate} drift=${drift}`,
  ].join(' ');
}

/** What the injector acts on (the simulator). */
export interface FaultTarget {
  readonly now: number;
  /** Every server not retired, in a fixed order. */
  serverIds(): readonly NodeId[];
  isUp(id: NodeId): boolean;
  /** Whether the server was shut down for good (it is not restarted). */
  isRetired(id: NodeId): boolean;
  crash(id: NodeId, fate: CrashFate): void;
  /** Freezes a running server for `ticks` ticks. */
  pause(id: NodeId, ticks: number): void;
  restart(id: NodeId): void;
  /** The configurations the running servers currently use. */
  liveConfigurations(): Membership[];
  partition(cuts: readonly (readonly [NodeId, NodeId])[], description: string): void;
  heal(): void;
  /** The leader with the highest term among running servers. */
  leaderId(): NodeId | undefined;
  /** Returns whether the leader accepted (appended) the change. */
  proposeMembershipChange(leader: NodeId, change: MembershipChange): boolean;
  transferLeadership(leader: NodeId, to: NodeId): void;
  membershipOf(id: NodeId): Membership;
}

export class FaultInjector {
  private healAt: number | undefined;
  private readonly restartAt = new Map<NodeId, number>();
  /** Spares proposed as learners once: later they count as servers removed earlier. */
  private readonly sparesUsed = new Set<NodeId>();
  crashes = 0;
  pauses = 0;
  partitions = 0;
  /** Membership changes the leader accepted. */
  membershipChanges = 0;

  constructor(
    private readonly rng: SimRng,
    readonly profile: FaultProfile,
    /** Servers that may join the group, in the order they are added. */
    private readonly spares: readonly NodeId[],
    /** The number of voters the group is kept near. */
    private readonly targetVoters: number,
  ) {}

  step(world: FaultTarget): void {
    const now = world.now;
    if (this.healAt !== undefined && now >= this.healAt) {
      this.healAt = undefined;
      world.heal();
    } else if (this.healAt === undefined && this.rng.chance(this.profile.partitionRate)) {
      this.startPartition(world);
    }

    for (const [id, at] of [...this.restartAt]) {
      if (at > now) continue;
      this.restartAt.delete(id);
      if (!world.isRetired(id)) world.restart(id);
    }
    if (this.rng.chance(this.profile.crashRate)) this.crashOne(world);
    if (this.rng.chance(this.profile.pauseRate)) {
      const up = world.serverIds().filter((id) => world.isUp(id));
      if (up.length > 0) {
        this.pauses++;
        world.pause(this.target(world, up), this.rng.between(this.profile.pauseTicks[0], this.profile.pauseTicks[1]));
      }
    }

    if (this.rng.chance(this.profile.membershipRate)) this.changeMembership(world);
    if (this.rng.chance(this.profile.transferRate)) {
      const leader = world.leaderId();
      if (leader !== undefined) {
        const others = world.membershipOf(leader).voters.filter((id) => id !== leader);
        if (others.length > 0) world.transferLeadership(leader, this.rng.pick(others));
      }
    }
  }

  /** The liveness phase restarts every crashed server itself. */
  forgetRestarts(): void {
    this.restartAt.clear();
  }

  private startPartition(world: FaultTarget): void {
    const ids = world.serverIds();
    if (ids.length < 2) return;
    const cuts: [NodeId, NodeId][] = [];
    let description: string;
    const shape = this.rng.int(5);
    if (shape === 4) {
      // The leader (or anyone) with a minority on one side, the majority on the other.
      const x = this.target(world, ids);
      const others = this.rng.shuffle(ids.filter((id) => id !== x));
      const a = [x, ...others.slice(0, this.rng.int(Math.floor((ids.length - 1) / 2)))];
      const b = ids.filter((id) => !a.includes(id));
      for (const p of a) for (const q of b) cuts.push([p, q], [q, p]);
      description = `minority {${a.join(',')}} | {${b.join(',')}}`;
    } else if (shape === 0) {
      // Two sides that cannot hear each other.
      const order = this.rng.shuffle(ids);
      const split = 1 + this.rng.int(order.length - 1);
      const a = order.slice(0, split);
      const b = order.slice(split);
      for (const x of a) for (const y of b) cuts.push([x, y], [y, x]);
      description = `split {${a.join(',')}} | {${b.join(',')}}`;
    } else if (shape === 1) {
      // One server cut off in both directions.
      const x = this.target(world, ids);
      for (const y of ids) if (y !== x) cuts.push([x, y], [y, x]);
      description = `isolate ${x}`;
    } else if (shape === 2) {
      // Asymmetric: one server hears everyone, nobody hears it (or the reverse).
      const x = this.target(world, ids);
      const deaf = this.rng.chance(0.5);
      for (const y of ids) if (y !== x) cuts.push(deaf ? [y, x] : [x, y]);
      description = deaf ? `${x} hears nobody` : `nobody hears ${x}`;
    } else {
      // Asymmetric: random one-way links fail.
      const parts: string[] = [];
      for (const x of ids) {
        for (const y of ids) {
          if (x !== y && this.rng.chance(0.3)) {
            cuts.push([x, y]);
            parts.push(`${x}>${y}`);
          }
        }
      }
      description = `one-way cuts ${parts.join(' ') || '(none)'}`;
    }
    this.partitions++;
    this.healAt = world.now + this.rng.between(this.profile.partitionTicks[0], this.profile.partitionTicks[1]);
    world.partition(cuts, description);
  }

  /** Crashes a running server, if a majority of every configuration in use stays up without it. */
  private crashOne(world: FaultTarget): void {
    const up = world.serverIds().filter((id) => world.isUp(id));
    if (up.length === 0) return;
    const victim = this.target(world, up);
    const configs = world.liveConfigurations();
    for (const config of configs) {
      if (config.voters.length === 0) continue;
      const alive = config.voters.filter((id) => id !== victim && world.isUp(id)).length;
      if (alive * 2 <= config.voters.length) return;
    }
    const fates = this.profile.crashFates;
    const total = Object.values(fates).reduce((a, b) => a + b, 0);
    let roll = this.rng.next() * total;
    let fate: CrashFate = 'lost';
    for (const [name, weight] of Object.entries(fates) as [CrashFate, number][]) {
      roll -= weight;
      if (roll < 0) {
        fate = name;
        break;
      }
    }
    this.crashes++;
    world.crash(victim, fate);
    this.restartAt.set(victim, world.now + this.rng.between(this.profile.downTicks[0], this.profile.downTicks[1]));
  }

  /** The leader, with probability leaderBias (when it is among `candidates`), else any of them. */
  private target(world: FaultTarget, candidates: readonly NodeId[]): NodeId {
    if (this.rng.chance(this.profile.leaderBias)) {
      const leader = world.leaderId();
      if (leader !== undefined && candidates.includes(leader)) return leader;
    }
    return this.rng.pick(candidates);
  }

  /**
   * One change at a time, keeping the group near its size: promote a learner, else remove a voter
   * when there are more than the target (sometimes also at the target), else add a server that is
   * not a member as a learner — a spare never used before if there is one, else one removed
   * earlier, which rejoins with its disk intact. A change that would leave the new configuration
   * without a majority of running voters is not proposed.
   */
  private changeMembership(world: FaultTarget): void {
    const leader = world.leaderId();
    if (leader === undefined) return;
    const { voters, learners } = world.membershipOf(leader);
    const keepsMajority = (next: readonly NodeId[]): boolean => next.filter((id) => world.isUp(id)).length * 2 > next.length;
    let change: MembershipChange | undefined;
    const learner = learners[0];
    if (learner !== undefined) {
      if (keepsMajority([...voters, learner])) change = { kind: 'promote', node: learner };
    } else if (voters.length > this.targetVoters || (voters.length === this.targetVoters && this.rng.chance(0.3))) {
      const node = this.rng.pick(voters);
      if (keepsMajority(voters.filter((id) => id !== node))) change = { kind: 'remove', node };
    } else {
      const outsiders = world
        .serverIds()
        .filter((id) => !voters.includes(id) && !learners.includes(id) && world.isUp(id) && !world.isRetired(id));
      const fresh = outsiders.find((id) => this.spares.includes(id) && !this.sparesUsed.has(id));
      const node = fresh ?? (outsiders.length > 0 ? this.rng.pick(outsiders) : undefined);
      if (node !== undefined) {
        this.sparesUsed.add(node);
        change = { kind: 'add_learner', node };
      }
    }
    if (change !== undefined && world.proposeMembershipChange(leader, change)) this.membershipChanges++;
  }
}
