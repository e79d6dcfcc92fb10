// Directed fault schedules ("nemeses", after Jepsen). Random faults rarely line up into the few
// histories that break the subtle rules of Raft: the Figure 8 schedule of §5.4.2 needs five faults
// in the right order, and a lease bug needs a deposed leader with a slow clock, a quick election and
// a client that reads from the old leader right after writing to the new one. A nemesis watches the
// cluster every step (it sees every server's state, as an adversary may) and strikes when the state
// it waits for arrives. It uses only faults of the model — partitions, message loss, duplication
// and delay, clock rates within the drift bound — and never reaches into a core, so a correct core
// survives any schedule it makes; the two nemeses are in figure8.ts and stale-lease.ts.
//
// The schedule is chosen per seed (simulator.ts: drawScenario): most seeds run random faults only;
// a share runs one nemesis, with the random faults it would interfere with (partitions, crashes,
// pauses, membership changes, transfers) turned off, and message- and disk-level faults kept.
import type { KvInput, KvOutput } from '@concord/lincheck';
import type { Message, NodeId, RaftStatus } from '../raft/types.js';
import type { SimRng } from './rng.js';

export type ScenarioName = 'random' | 'figure-8' | 'stale-lease';

export const SCENARIOS: readonly ScenarioName[] = ['random', 'figure-8', 'stale-lease'];

/** What a nemesis counts, for the run's statistics. */
export interface NemesisStats {
  /** Rounds of the schedule started. */
  rounds: number;
  /** Rounds that reached the critical state (figure-8: an earlier-term entry on a majority; lease: the race). */
  strikes: number;
  /** Rounds given up because the cluster did not reach the next state in time. */
  abandoned: number;
}

/** The outcome of the probe client's latest operation. */
export type ProbeOutcome = { kind: 'pending' } | { kind: 'ok'; output: KvOutput; at: number } | { kind: 'failed'; at: number };

/** What a nemesis sees of the world and what it may do to it (the simulator). */
export interface NemesisWorld {
  /** The current step of the world clock. */
  readonly now: number;
  /** World steps per nominal Raft tick (a server with clock rate 1 ticks once every this many steps). */
  readonly stepsPerTick: number;
  readonly electionTicks: number;
  /** The voters (scenario seeds never change the membership). */
  readonly voters: readonly NodeId[];
  readonly rng: SimRng;
  /** A running server's Raft status; undefined when it is down. */
  status(id: NodeId): RaftStatus | undefined;
  /** The highest commit index any server has had so far. */
  highestCommit(): number;
  /** Replaces the partition in force: every pair of servers in different groups is cut both ways. */
  partitionGroups(groups: readonly (readonly NodeId[])[], description: string): void;
  /** Replaces the partition in force with these directed cuts. */
  cut(cuts: readonly (readonly [NodeId, NodeId])[], description: string): void;
  heal(description: string): void;
  /** Sets a server's clock rate, in ticks per nominal tick (1: nominal). */
  setClockRate(id: NodeId, rate: number, why: string): void;
  /** Restores every server's clock rate to the one its seed drew. */
  restoreClockRates(): void;
  /** The last step at which server `id` ticked. */
  lastTickAt(id: NodeId): number;
  /** Delivers a copy of `m` during this step (a duplicate the network held back). */
  redeliver(m: Message): void;
  /** Makes the clients put off (or, with false, resume) their writes. */
  holdWrites(held: boolean): void;
  /** Whether any client has a write in flight. */
  writesInFlight(): boolean;
  /** Starts the probe client's next operation against `target`. */
  probe(target: NodeId, input: KvInput): void;
  probeOutcome(): ProbeOutcome;
  note(text: string): void;
}

export interface Nemesis {
  readonly stats: NemesisStats;
  /** Called at the start of every step of the safety phase, before anything is delivered. */
  step(world: NemesisWorld): void;
  /** A server sent `m`. */
  onSend(m: Message, world: NemesisWorld): void;
  /** `m` was just delivered to (and stepped into) its receiver. */
  onDeliver(m: Message, world: NemesisWorld): void;
  /** Whether the network loses `m` at delivery. */
  loses(m: Message): boolean;
}

/** Every directed link between servers of different groups; servers in no group are cut off from all. */
export function cutsBetween(all: readonly NodeId[], groups: readonly (readonly NodeId[])[]): [NodeId, NodeId][] {
  const groupOf = new Map<NodeId, number>();
  groups.forEach((group, i) => {
    for (const id of group) groupOf.set(id, i);
  });
  const cuts: [NodeId, NodeId][] = [];
  for (const a of all) {
    for (const b of all) {
      if (a === b) continue;
      const ga = groupOf.get(a);
      const gb = groupOf.get(b);
      if (ga === undefined || gb === undefined || ga !== gb) cuts.push([a, b]);
    }
  }
  return cuts;
}

/** The leaders among running servers, highest term first. */
export function leaders(world: NemesisWorld): { id: NodeId; term: number }[] {
  const out: { id: NodeId; term: number }[] = [];
  for (const id of world.voters) {
    const s = world.status(id);
    if (s?.role === 'leader') out.push({ id, term: s.term });
  }
  return out.sort((a, b) => b.term - a.term);
}

export function quorum(voters: readonly NodeId[]): number {
  return Math.floor(voters.length / 2) + 1;
}

export function emptyStats(): NemesisStats {
  return { rounds: 0, strikes: 0, abandoned: 0 };
}
