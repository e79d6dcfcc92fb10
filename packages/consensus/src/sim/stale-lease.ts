// The stale-lease nemesis (thesis §6.4.1). A leader that serves reads from its lease trusts that
// no other leader can be elected before its lease ends: voters that acknowledged its heartbeat
// ignore candidates for an election timeout of *their* clocks, and the leader counts its lease on
// *its* clock, shorter by leaseSafetyMarginTicks — one tick for tick granularity plus ρ·electionTicks
// for clocks whose rates differ by up to a factor 1 + ρ (config.ts). The schedule runs the worst case
// that bound allows, in rounds:
//
//   1. quiesce   once a leader L has led for a while, clients hold their writes until every log
//                holds all of L's entries (so that a candidate cut off from L is not left behind:
//                the F below would refuse a candidate whose log is shorter than theirs);
//   2. candidate slow L's clock by the whole factor 1 + ρ that the configured margin tolerates
//                (ρ = (margin − 1) / electionTicks), run every other clock at the nominal rate,
//                pick q−1 followers F that keep L's lease (q: a majority) and cut L off from the
//                others, G among them, so that G's election timer runs out and G campaigns; the F
//                keep refusing it while they hear from L;
//   3. align    wait for a heartbeat round that every F acknowledged and that some F received just
//                before its clock ticked (so its election timeout runs from that heartbeat with no
//                slack), then cut L off from everyone: its lease runs out on its slow clock;
//   4. race     the network duplicates G's latest (pre-)vote request to every server each step and
//                loses their refusals, so G wins at the first moment a voter's election timeout
//                has passed;
//   5. probe    a probe client writes a fresh value to the new leader and, once it is acknowledged,
//                reads the key from L. Then the clients write again.
//
// With the configured margin, L's lease is over before the new leader exists, so L starts a
// heartbeat round that cannot complete and the read gets no answer. With a margin that ignores
// drift, L answers from its lease: the read index check sees a read answered after a newer leader
// was elected, and the history has a read that misses a write acknowledged before it started.
//
// Every second round of a seed (the 2nd, 4th, …) also holds acknowledgements back, for the other
// way a lease can outlast the voters' promise: counted from when a heartbeat's acknowledgement
// ARRIVED instead of from when the heartbeat was SENT. The F started ignoring candidates when they
// received the heartbeat, however late their answer reaches L. In such a round, step 3 becomes
//
//   3'. align    from now on the network holds back the F's acknowledgements to L and lets each
//                go after HOLD_DECISION_STEPS steps unless its heartbeat is struck after; strike
//                after a heartbeat round that is every F's latest contact and none of whose
//                acknowledgements reached L (no need to wait for a tick right after it: see
//                strikeHeartbeat): nobody hears L any more, but the F's links to L stay open, and
//                the acknowledgements of that round are delivered to L only once its clock has
//                ticked margin + 1 times.
//
// Then the race and the probe run as above. A correct L counts its lease from the heartbeat's send
// time, so the late acknowledgements do not move its end: it is over before the new leader exists.
// A lease counted from their arrival lasts at least margin + 1 ticks of L's clock longer, past the
// election and the probe's write (a fraction of a tick), and L answers the probe's read from it.
// Rounds alternate, rather than drawing which kind to run, so that each seed's first round is what
// it was before this kind existed: a draw from the nemesis' stream would reshuffle all that follows.
//
// The race is measured in steps much shorter than a tick (stale-lease seeds run stepsPerTick world
// steps per nominal tick, with message latencies and fsyncs of a step or two, as on a LAN with 50 ms
// ticks): with a network no faster than a tick, the election's four message delays would cover the
// margin on their own and hide the bug.
import type { Message, NodeId } from '../raft/types.js';
import { emptyStats, leaders, quorum, type Nemesis, type NemesisStats, type NemesisWorld } from './nemesis.js';

/** The key the probe client writes and reads (no other client uses it). */
export const PROBE_KEY = 'lease-probe';

/** How long, in election timeouts, a round waits for the cluster to reach its next state. */
const PHASE_TIMEOUTS = 20;
/** A leader this many election timeouts old is settled enough to be the round's victim. */
const SETTLED_TIMEOUTS = 3;
/** A heartbeat counts as received "just before a tick" when the receiver ticks within this many steps. */
const ALIGNMENT_STEPS = 1;
/**
 * In a round that holds acknowledgements back, how many steps one is held before the align phase
 * lets it go on to L, unless its heartbeat became the strike's: enough for the heartbeat to reach
 * the other keepers (message latencies are a step or two).
 */
const HOLD_DECISION_STEPS = 3;

interface Contact {
  /** The heartbeat's send tick (leader clock), or undefined for an append or snapshot. */
  heartbeat: number | undefined;
  at: number;
  /** The step of the receiver's first tick at or after `at`. */
  tickAt: number | undefined;
}

type Phase =
  | { kind: 'idle'; until: number }
  | { kind: 'settle'; leader: NodeId; term: number; since: number }
  | { kind: 'quiesce'; leader: NodeId; term: number; deadline: number }
  | { kind: 'candidate'; round: Round; deadline: number }
  | { kind: 'align'; round: Round; deadline: number }
  | { kind: 'race'; round: Round; deadline: number }
  | { kind: 'probe-write'; round: Round; deadline: number }
  | { kind: 'probe-read'; round: Round; deadline: number };

interface Round {
  leader: NodeId;
  term: number;
  keepers: NodeId[];
  candidate: NodeId;
  others: NodeId[];
  contacts: Map<NodeId, Contact>;
  acked: Map<NodeId, number>;
  /** The candidate's latest (pre-)vote request to each server. */
  requests: Map<NodeId, Message>;
  /** Whether this round holds back the keepers' acknowledgements (every second round). */
  holdsAcks: boolean;
  /** Whether the network is holding back keepers' acknowledgements to L right now. */
  holding: boolean;
  /** The acknowledgements held back, each with the step it was held at. */
  held: { message: Message; since: number }[];
  /** Heartbeats (send tick) whose acknowledgements are let through: they will not be struck after. */
  passed: Set<number>;
  /** After the strike: L's ticks still to come before the held acknowledgements are delivered. */
  release: { ticksLeft: number; lastTick: number } | undefined;
}

export class StaleLeaseNemesis implements Nemesis {
  readonly stats: NemesisStats = emptyStats();
  private phase: Phase = { kind: 'idle', until: 0 };
  private probes = 0;
  /** The world step this nemesis last saw (loses() is called later in the same step). */
  private now = 0;

  constructor(
    /** The lease margin the cores are configured with (leaseSafetyMarginTicks). */
    private readonly marginTicks: number,
  ) {}

  /** The slowest clock rate the margin tolerates against a nominal one: 1 / (1 + ρ). */
  slowRate(electionTicks: number): number {
    return 1 / (1 + (this.marginTicks - 1) / electionTicks);
  }

  step(world: NemesisWorld): void {
    this.now = world.now;
    this.noteTicks(world);
    this.releaseWhenDue(world);
    const phase = this.phase;
    if ('deadline' in phase && world.now >= phase.deadline) {
      this.stats.abandoned++;
      this.rest(world, `stale-lease: gave up waiting (${phase.kind})`);
      return;
    }
    switch (phase.kind) {
      case 'idle':
        if (world.now >= phase.until) this.phase = { kind: 'settle', leader: '', term: 0, since: world.now };
        return;
      case 'settle':
        this.settle(world, phase);
        return;
      case 'quiesce':
        this.quiesce(world, phase);
        return;
      case 'candidate': {
        const role = world.status(phase.round.candidate)?.role;
        if (!this.leaderHolds(world, phase.round)) return;
        if (role === 'pre_candidate' || role === 'candidate') {
          phase.round.holding = phase.round.holdsAcks;
          this.phase = { kind: 'align', round: phase.round, deadline: this.deadline(world) };
        }
        return;
      }
      case 'align':
        this.align(world, phase);
        return;
      case 'race': {
        const round = phase.round;
        const winner = leaders(world).find((l) => l.id !== round.leader && l.term > round.term);
        if (winner !== undefined) {
          world.note(`stale-lease: ${winner.id} leads term ${winner.term}; probe writes there, then reads from ${round.leader}`);
          world.probe(winner.id, { op: 'put', key: PROBE_KEY, value: `probe.${++this.probes}` });
          this.phase = { kind: 'probe-write', round, deadline: this.deadline(world) };
          return;
        }
        for (const request of round.requests.values()) if (request.to !== round.leader) world.redeliver(request);
        return;
      }
      case 'probe-write': {
        const outcome = world.probeOutcome();
        if (outcome.kind === 'pending') return;
        if (outcome.kind === 'failed') {
          this.rest(world, 'stale-lease: the probe write did not complete');
          return;
        }
        world.probe(phase.round.leader, { op: 'get', key: PROBE_KEY });
        this.phase = { kind: 'probe-read', round: phase.round, deadline: this.deadline(world) };
        return;
      }
      case 'probe-read':
        if (world.probeOutcome().kind !== 'pending') this.rest(world, 'stale-lease: round over');
        return;
    }
  }

  onSend(m: Message): void {
    const round = this.round();
    if (round === undefined || m.from !== round.candidate) return;
    if (m.type === 'vote' || m.type === 'pre_vote') round.requests.set(m.to, m);
  }

  onDeliver(m: Message, world: NemesisWorld): void {
    const round = this.round();
    if (round === undefined || m.from === m.to) return;
    if (m.from === round.leader && round.keepers.includes(m.to)) {
      if (m.type === 'heartbeat') round.contacts.set(m.to, { heartbeat: m.index, at: world.now, tickAt: undefined });
      else if (m.type === 'append' || m.type === 'snapshot') round.contacts.set(m.to, { heartbeat: undefined, at: world.now, tickAt: undefined });
    } else if (m.to === round.leader && m.type === 'heartbeat_response' && round.keepers.includes(m.from)) {
      round.acked.set(m.from, Math.max(round.acked.get(m.from) ?? -1, m.index));
    }
  }

  loses(m: Message): boolean {
    const round = this.round();
    if (round === undefined) return false;
    if (this.holdsBack(round, m)) {
      round.held.push({ message: m, since: this.now });
      return true;
    }
    // The candidate must not learn of refusals while the keepers still hear from L: a refusal
    // counts for the whole (pre-)vote round, and the duplicate that arrives once the keeper's
    // timeout has passed would be ignored.
    if (m.to !== round.candidate || !m.reject) return false;
    return m.type === 'pre_vote_response' || m.type === 'vote_response';
  }

  /** Whether `m` is a keeper's acknowledgement to L that the network holds back instead of delivering. */
  private holdsBack(round: Round, m: Message): boolean {
    return (
      round.holding &&
      m.type === 'heartbeat_response' &&
      m.to === round.leader &&
      round.keepers.includes(m.from) &&
      !round.passed.has(m.index)
    );
  }

  /** After the strike: delivers the held acknowledgements once L's clock ticked margin + 1 times. */
  private releaseWhenDue(world: NemesisWorld): void {
    const round = this.round();
    const release = round?.release;
    if (round === undefined || release === undefined || !round.holding) return;
    const tick = world.lastTickAt(round.leader);
    if (tick > release.lastTick) {
      release.lastTick = tick;
      release.ticksLeft--;
    }
    if (release.ticksLeft > 0) return;
    world.note(`stale-lease: delivers ${round.held.length} held acknowledgement(s) to ${round.leader}, ${this.marginTicks + 1} of its ticks late`);
    this.deliverHeld(world, round, () => true);
    round.holding = false;
  }

  /** Delivers the held acknowledgements that `due` picks, and lets later copies of theirs through. */
  private deliverHeld(world: NemesisWorld, round: Round, due: (held: { message: Message; since: number }) => boolean): void {
    const keep: { message: Message; since: number }[] = [];
    for (const held of round.held) {
      if (!due(held)) {
        keep.push(held);
        continue;
      }
      round.passed.add(held.message.index);
      world.redeliver(held.message);
    }
    round.held = keep;
  }

  /** Records, for each keeper's latest contact with L, the first step the keeper ticked after it. */
  private noteTicks(world: NemesisWorld): void {
    const round = this.round();
    if (round === undefined) return;
    for (const [id, contact] of round.contacts) {
      if (contact.tickAt === undefined && world.lastTickAt(id) >= contact.at) contact.tickAt = world.lastTickAt(id);
    }
  }

  private round(): Round | undefined {
    const phase = this.phase;
    return 'round' in phase ? phase.round : undefined;
  }

  private settle(world: NemesisWorld, phase: Extract<Phase, { kind: 'settle' }>): void {
    const leader = leaders(world)[0];
    if (leader === undefined) return;
    if (leader.id !== phase.leader || leader.term !== phase.term) {
      this.phase = { kind: 'settle', leader: leader.id, term: leader.term, since: world.now };
      return;
    }
    if (world.now - phase.since < SETTLED_TIMEOUTS * this.timeout(world)) return;
    this.stats.rounds++;
    world.holdWrites(true);
    this.phase = { kind: 'quiesce', leader: leader.id, term: leader.term, deadline: this.deadline(world) };
  }

  private quiesce(world: NemesisWorld, phase: Extract<Phase, { kind: 'quiesce' }>): void {
    const s = world.status(phase.leader);
    if (s?.role !== 'leader' || s.term !== phase.term) {
      this.stats.abandoned++;
      this.rest(world, `stale-lease: ${phase.leader} no longer leads term ${phase.term}`);
      return;
    }
    if (world.writesInFlight() || s.commit !== s.lastIndex) return;
    for (const id of world.voters) if (world.status(id)?.lastIndex !== s.lastIndex) return;
    const leader = { id: phase.leader, term: phase.term };
    const followers = world.rng.shuffle(world.voters.filter((id) => id !== leader.id));
    const q = quorum(world.voters);
    const keepers = followers.slice(0, q - 1);
    const [candidate, ...others] = followers.slice(q - 1);
    if (candidate === undefined) throw new Error('stale-lease: a cluster of one has no candidate');
    const slow = this.slowRate(world.electionTicks);
    for (const id of world.voters) {
      world.setClockRate(id, id === leader.id ? slow : 1, id === leader.id ? 'stale-lease: the leader runs slow' : 'stale-lease');
    }
    const cuts: [NodeId, NodeId][] = [];
    for (const id of [candidate, ...others]) cuts.push([leader.id, id], [id, leader.id]);
    world.cut(cuts, `stale-lease: ${keepers.join(',')} keep ${leader.id}'s lease; ${[candidate, ...others].join(',')} stop hearing it`);
    const round: Round = {
      leader: leader.id,
      term: leader.term,
      keepers,
      candidate,
      others,
      contacts: new Map(),
      acked: new Map(),
      requests: new Map(),
      holdsAcks: this.stats.rounds % 2 === 0,
      holding: false,
      held: [],
      passed: new Set(),
      release: undefined,
    };
    this.phase = { kind: 'candidate', round, deadline: this.deadline(world) };
  }

  private align(world: NemesisWorld, phase: Extract<Phase, { kind: 'align' }>): void {
    const round = phase.round;
    if (!this.leaderHolds(world, round)) return;
    const heartbeat = this.strikeHeartbeat(round);
    if (heartbeat === undefined) {
      if (round.holding) this.deliverHeld(world, round, (held) => world.now - held.since >= HOLD_DECISION_STEPS);
      return;
    }
    this.stats.strikes++;
    if (round.holdsAcks) {
      // Nobody hears L; the keepers' link to L stays open for the acknowledgements held back.
      const cuts: [NodeId, NodeId][] = [];
      for (const id of world.voters) {
        if (id === round.leader) continue;
        cuts.push([round.leader, id]);
        if (!round.keepers.includes(id)) cuts.push([id, round.leader]);
      }
      world.cut(
        cuts,
        `stale-lease: cut ${round.leader} off after the heartbeat of its tick ${heartbeat}, holding back its acknowledgements ` +
          `for ${this.marginTicks + 1} of its ticks; ${round.candidate} races for leadership`,
      );
      round.release = { ticksLeft: this.marginTicks + 1, lastTick: world.lastTickAt(round.leader) };
    } else {
      world.partitionGroups(
        [[round.leader], world.voters.filter((id) => id !== round.leader)],
        `stale-lease: cut ${round.leader} off after the heartbeat of its tick ${heartbeat}; ${round.candidate} races for leadership`,
      );
    }
    this.phase = { kind: 'race', round, deadline: world.now + 4 * this.timeout(world) };
  }

  /**
   * The heartbeat round to strike after, if there is one now: each keeper's latest contact with L,
   * acknowledged by all of them and received by some keeper just before it ticked — or, in a round
   * that holds acknowledgements back, none of whose acknowledgements has reached L.
   */
  private strikeHeartbeat(round: Round): number | undefined {
    let heartbeat: number | undefined;
    let aligned = false;
    for (const id of round.keepers) {
      const contact = round.contacts.get(id);
      if (contact === undefined) return undefined;
      if (contact.heartbeat === undefined || (heartbeat !== undefined && contact.heartbeat !== heartbeat)) return undefined;
      heartbeat = contact.heartbeat;
      const acked = (round.acked.get(id) ?? -1) >= heartbeat;
      if (round.holdsAcks ? acked || round.passed.has(heartbeat) : !acked) return undefined;
      if (contact.tickAt !== undefined && contact.tickAt - contact.at <= ALIGNMENT_STEPS) aligned = true;
    }
    // A round that holds acknowledgements back does not wait for a keeper's tick to fall right
    // after the heartbeat: the bug it is after stretches the lease by more than a tick, so it needs
    // no race that tight, and that wait is what most often makes a round give up.
    return aligned || round.holdsAcks ? heartbeat : undefined;
  }

  /** Whether the round's leader still leads its term (a round whose leader stepped down is over). */
  private leaderHolds(world: NemesisWorld, round: Round): boolean {
    const s = world.status(round.leader);
    if (s?.role === 'leader' && s.term === round.term) return true;
    this.stats.abandoned++;
    this.rest(world, `stale-lease: ${round.leader} no longer leads term ${round.term}`);
    return false;
  }

  private rest(world: NemesisWorld, why: string): void {
    const round = this.round();
    world.heal(why);
    if (round?.holding === true) {
      // Acknowledgements still held are late, not lost.
      this.deliverHeld(world, round, () => true);
      round.holding = false;
    }
    world.restoreClockRates();
    world.holdWrites(false);
    const e = this.timeout(world);
    this.phase = { kind: 'idle', until: world.now + world.rng.between(2 * e, 6 * e) };
  }

  private timeout(world: NemesisWorld): number {
    return world.electionTicks * world.stepsPerTick;
  }

  private deadline(world: NemesisWorld): number {
    return world.now + PHASE_TIMEOUTS * this.timeout(world);
  }
}
