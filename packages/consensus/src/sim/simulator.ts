// The deterministic simulator (CONVENTIONS §2, after TigerBeetle's VOPR): the production RaftCore
// on 3 or 5 simulated servers, with simulated transport (network.ts), storage (storage.ts), clock
// (ticks) and randomness (rng.ts), every choice derived from one SEED. A run is:
//
//   1. Safety phase (`ticks` steps; stale-lease seeds run 8 times as many): every fault the seed's profile allows (faults.ts) — loss,
//      duplication, delay and reordering, symmetric and one-way partitions, crashes that lose or
//      tear unsynced writes, pauses, restarts, clock drift, membership changes, leadership
//      transfers, snapshots and compaction — while clients (clients.ts) read and write a few
//      keys. The checkers (checkers.ts) run after every input, durable write, apply and read.
//   2. Liveness phase: the network heals, crashed servers restart and servers outside the
//      leader's configuration are shut down; within `livenessTicks` a leader must be elected and
//      a new client write must commit.
//   3. The clients' history must be linearizable (@concord/lincheck, the KV model with versions).
//      A search that runs out of budget is reported as 'unknown', never as a pass.
//
// A share of the seeds runs a directed schedule (a nemesis, nemesis.ts) in the safety phase instead
// of random partitions and crashes: the Figure 8 history of §5.4.2 (figure8.ts) or a race against a
// leader lease on a slow clock (stale-lease.ts). The world clock counts steps; a server with clock
// rate 1 ticks once every `stepsPerTick` steps — one for most seeds, more for stale-lease seeds,
// whose network must be much faster than a tick.
//
// Each step: faults → nemesis → deliveries due → server ticks → fsyncs due → Readies → clients. Nothing
// depends on wall time or on Map/Set iteration over anything but insertion order, so a seed
// replays exactly; the trace digest proves it (sim.test.ts).
import { HistoryRecorder, checkLinearizable, kvModel, type KvInput, type KvOutput, type Verdict } from '@concord/lincheck';
import { normalizeOptions } from '../raft/config.js';
import { RaftCore, type RaftCoreOptions } from '../raft/core.js';
import type { RaftCoreMutations } from '../raft/mutations.js';
import type { Membership, MembershipChange, Message, NodeId, RaftStatus } from '../raft/types.js';
import { CheckFailure, SafetyCheckers, type OptionalCheck } from './checkers.js';
import { ProbeClient, SimClient, type ClientSettings, type ClientWorld, type KvRecorder } from './clients.js';
import { FaultInjector, describeProfile, drawFaultProfile, type FaultProfile, type FaultTarget } from './faults.js';
import { Figure8Nemesis } from './figure8.js';
import { cutsBetween, type Nemesis, type NemesisStats, type NemesisWorld, type ScenarioName } from './nemesis.js';
import { CALM_LINKS, SimNetwork, type ClientReply, type ClientRequest, type Packet } from './network.js';
import { SimRng } from './rng.js';
import { SimServer, type CoreFactory, type DriverFlaw, type ServerHost } from './server.js';
import { StaleLeaseNemesis } from './stale-lease.js';
import type { CrashFate } from './storage.js';
import { DEFAULT_TRACE_TAIL, Trace } from './trace.js';

/** Ticks of the safety phase unless --ticks says otherwise. */
export const DEFAULT_SAFETY_TICKS = 3000;
/** The liveness phase's bound, in election timeouts: a leader and a committed write within it. */
export const LIVENESS_ELECTION_TIMEOUTS = 60;
/** Search budget of the linearizability checker, per key. */
export const DEFAULT_LINCHECK_MAX_STEPS = 20_000_000;
/** How often (in steps) the stored logs are compared pairwise, on top of the incremental check. */
const FULL_LOG_CHECK_EVERY = 250;
/**
 * Shares of the seeds that run each directed scenario (drawn from the seed's own 'scenario'
 * stream, so the other seeds are exactly what they were before scenarios existed).
 */
const SCENARIO_SHARES: readonly (readonly [ScenarioName, number])[] = [
  ['figure-8', 0.1],
  ['stale-lease', 0.1],
];
/**
 * Stale-lease seeds: world steps per nominal tick. With 50 ms ticks a step is 1.25 ms, and their
 * messages take 1–2 steps and fsyncs 0–2: a LAN, where an election's round trips are short next to
 * the lease margin. Their safety phase is SAFETY_SCALE times longer in steps (a fifth as many ticks).
 */
export const STALE_LEASE_STEPS_PER_TICK = 40;
const STALE_LEASE_SAFETY_SCALE = 8;

export interface SimulationOptions {
  seed: number;
  /** Ticks of the safety phase. */
  ticks?: number;
  /** Bound of the liveness phase, in ticks (default LIVENESS_ELECTION_TIMEOUTS election timeouts). */
  livenessTicks?: number;
  /** Receives every trace event as it happens. */
  verbose?: (line: string) => void;
  /** How many events a failure report shows. */
  traceTail?: number;
  /** Replaces the production core (tests of the checkers only). */
  coreFactory?: CoreFactory;
  /** Deliberate bugs in the production core (mutation tests only; ignored with coreFactory). */
  mutations?: RaftCoreMutations;
  /** Runs this scenario instead of the one the seed draws. */
  scenario?: ScenarioName;
  /** Checks to switch off (tests only: to show that the history check catches the same bug). */
  skipChecks?: readonly OptionalCheck[];
  /** Breaks the driver on purpose (tests of the checkers only). */
  flaw?: DriverFlaw;
  /** Search budget of the linearizability checker (default DEFAULT_LINCHECK_MAX_STEPS). */
  lincheckMaxSteps?: number;
}

export interface SimulationFailure {
  check: string;
  message: string;
  tick: number;
  phase: Phase;
  /** The last events before the failure, formatted. */
  trace: string[];
}

export interface SimulationResult {
  seed: number;
  passed: boolean;
  failure?: SimulationFailure;
  /** Digest of every event of the run: equal for two runs of one seed. */
  digest: string;
  /** The seed's cluster, options and fault profile, in one line. */
  setup: string;
  scenario: ScenarioName;
  /** World steps per nominal tick (1 but for stale-lease seeds). */
  stepsPerTick: number;
  /** Steps the run took. */
  ticks: number;
  /** Operations in the history handed to the linearizability checker. */
  operations: number;
  linearizability: Verdict | 'not checked';
  stats: SimulationStats;
}

export interface SimulationStats {
  events: number;
  elections: number;
  committed: number;
  crashes: number;
  pauses: number;
  restarts: number;
  partitions: number;
  membershipChanges: number;
  compactions: number;
  snapshotsInstalled: number;
  tornRecordsDropped: number;
  unsyncedRecordsKept: number;
  /** Entries leaders applied while writing a later Ready. */
  appliedDuringWrite: number;
  opsOk: number;
  opsUnknown: number;
  opsDiscarded: number;
  livenessTicks: number;
  /** Nemesis rounds started, rounds that reached their critical state, rounds given up. */
  nemesisRounds: number;
  nemesisStrikes: number;
  nemesisAbandoned: number;
}

type Phase = 'safety' | 'liveness' | 'final';

/** The cluster a seed gets. */
interface Setup {
  scenario: ScenarioName;
  founders: NodeId[];
  spares: NodeId[];
  core: Omit<RaftCoreOptions, 'id' | 'random'>;
  clients: number;
  client: ClientSettings;
  profile: FaultProfile;
  /** World steps per nominal tick. */
  stepsPerTick: number;
  /** The safety phase lasts this many times the `ticks` option, in steps. */
  safetyScale: number;
}

export function drawScenario(seed: number): ScenarioName {
  let roll = SimRng.derive(seed, 'scenario').next();
  for (const [name, share] of SCENARIO_SHARES) {
    if (roll < share) return name;
    roll -= share;
  }
  return 'random';
}

function drawSetup(seed: number, forced: ScenarioName | undefined): Setup {
  const base = drawRandomSetup(seed);
  const scenario = forced ?? drawScenario(seed);
  if (scenario !== 'random') shapeForScenario(base, scenario, SimRng.derive(seed, 'scenario-setup'));
  return base;
}

/** Random faults the nemesis takes over: it owns the partitions, and crashes would spoil its rounds. */
const NEMESIS_QUIET = { partitionRate: 0, crashRate: 0, pauseRate: 0, membershipRate: 0, transferRate: 0 } as const;

function shapeForScenario(setup: Setup, scenario: Exclude<ScenarioName, 'random'>, rng: SimRng): void {
  setup.scenario = scenario;
  switch (scenario) {
    case 'figure-8':
      // Small batches: see figure8.ts for why the schedule needs them.
      setup.core.maxAppendEntries = rng.pick([1, 1, 2, 3]);
      setup.profile = { ...setup.profile, ...NEMESIS_QUIET };
      // The rounds keep leaders cut off for several election timeouts, and the writes clients
      // send them have unknown outcomes, which the linearizability search must place: longer
      // timeouts make fewer of them, and a second key halves the search of each.
      setup.client = {
        ...setup.client,
        keys: setup.client.keys.length >= 2 ? setup.client.keys : ['k0', 'k1'],
        timeoutTicks: 2 * setup.client.timeoutTicks,
      };
      return;
    case 'stale-lease': {
      const p = STALE_LEASE_STEPS_PER_TICK;
      const e = setup.core.electionTicks;
      setup.core.readOnlyMode = 'lease_based';
      setup.core.checkQuorum = true;
      const margin = normalizeOptions({ ...setup.core, id: 'n0', random: () => 0 }).leaseSafetyMarginTicks;
      setup.stepsPerTick = p;
      setup.safetyScale = STALE_LEASE_SAFETY_SCALE;
      setup.profile = {
        ...setup.profile,
        ...NEMESIS_QUIET,
        links: {
          lossRate: rng.pick([0, 0, 0.01]),
          duplicateRate: setup.profile.links.duplicateRate,
          maxLatency: rng.pick([1, 2]),
          longDelayRate: rng.pick([0, 0.005]),
          longDelayTicks: rng.between(1, 2 * p),
        },
        fsyncTicks: [0, rng.pick([0, 1, 2])],
        clockDrift: rng.pick([0, 0.5, 1]) * ((margin - 1) / e),
        clockJitter: false,
      };
      setup.client = {
        ...setup.client,
        timeoutTicks: setup.client.timeoutTicks * p,
        thinkTicks: [setup.client.thinkTicks[0] * p, setup.client.thinkTicks[1] * p],
      };
      return;
    }
  }
}

function drawRandomSetup(seed: number): Setup {
  const rng = SimRng.derive(seed, 'setup');
  const size = rng.chance(0.5) ? 3 : 5;
  const founders = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const spares = [`n${size + 1}`, `n${size + 2}`];
  const electionTicks = rng.between(8, 16);
  const heartbeatTicks = rng.between(1, Math.max(1, Math.floor(electionTicks / 4)));
  const lease = rng.chance(0.3);
  const core: Setup['core'] = {
    electionTicks,
    heartbeatTicks,
    preVote: rng.chance(0.5),
    checkQuorum: lease || rng.chance(0.5),
    readOnlyMode: lease ? 'lease_based' : 'safe',
    maxAppendEntries: rng.between(1, 16),
    maxAppendBytes: 1 << 20,
    maxInflightAppends: rng.between(1, 8),
    // From a stream of its own, so that the draws above and below are what they were before the
    // option existed: half the random seeds run the driver's way of telling followers of commits.
    piggybackCommit: SimRng.derive(seed, 'piggyback-commit').chance(0.5),
  };
  const keys = Array.from({ length: rng.between(1, 4) }, (_, i) => `k${i}`);
  const client: ClientSettings = {
    keys,
    timeoutTicks: rng.between(3 * electionTicks, 8 * electionTicks),
    thinkTicks: [0, rng.between(1, 10)],
    wanderRate: rng.pick([0, 0.1, 0.3]),
  };
  const margin = normalizeOptions({ ...core, id: 'n0', random: () => 0 }).leaseSafetyMarginTicks;
  const leaseDriftBound = (margin - 1) / electionTicks;
  const profile = drawFaultProfile(SimRng.derive(seed, 'profile'), { electionTicks, lease, leaseDriftBound });
  return { scenario: 'random', founders, spares, core, clients: rng.between(2, 6), client, profile, stepsPerTick: 1, safetyScale: 1 };
}

function describeSetup(s: Setup): string {
  const c = s.core;
  const reads = c.readOnlyMode === 'lease_based' ? 'lease' : 'read-index';
  const flags = [reads, c.preVote ? 'pre-vote' : '', c.checkQuorum ? 'check-quorum' : '', c.piggybackCommit === true ? 'piggyback-commit' : '']
    .filter((f) => f !== '')
    .join(',');
  const scenario = s.scenario === 'random' ? '' : `scenario=${s.scenario}${s.stepsPerTick > 1 ? ` steps/tick=${s.stepsPerTick}` : ''} `;
  return (
    `${scenario}${s.founders.length} servers (+${s.spares.length} spares) election=${c.electionTicks}t heartbeat=${c.heartbeatTicks}t ${flags} ` +
    `inflight=${c.maxInflightAppends} batch=${c.maxAppendEntries} clients=${s.clients} keys=${s.client.keys.length} ` +
    `timeout=${s.client.timeoutTicks}t wander=${s.client.wanderRate} | ${describeProfile(s.profile)}`
  );
}

class Simulation implements FaultTarget, ClientWorld, ServerHost {
  now = 0;
  writesHeld = false;
  readonly trace: Trace;
  readonly checkers: SafetyCheckers;
  private phase: Phase = 'safety';
  private readonly setup: Setup;
  private readonly servers = new Map<NodeId, SimServer>();
  private readonly ids: NodeId[];
  private readonly network: SimNetwork;
  private readonly faults: FaultInjector;
  private readonly clients: SimClient[] = [];
  private readonly clientsById = new Map<string, { onReply(reply: ClientReply, now: number): void }>();
  private readonly recorder: KvRecorder;
  private readonly tickRates = new Map<NodeId, number>();
  /** The rates the seed drew (a nemesis may change tickRates for a while). */
  private readonly drawnTickRates = new Map<NodeId, number>();
  /** Steady clocks: how far each server is into its current tick, in steps × rate (a tick is stepsPerTick). */
  private readonly tickPhase = new Map<NodeId, number>();
  private readonly lastTick = new Map<NodeId, number>();
  private readonly nemesis: Nemesis | undefined;
  private readonly nemesisWorld: NemesisWorld;
  private readonly probe: ProbeClient | undefined;
  /** Paused servers and the tick they resume at. */
  private readonly pausedUntil = new Map<NodeId, number>();
  private readonly clockRng: SimRng;
  private readonly diskRng: SimRng;
  private liveness: SimClient | undefined;
  private livenessTicksUsed = 0;

  constructor(private readonly options: SimulationOptions) {
    const seed = options.seed;
    this.setup = drawSetup(seed, options.scenario);
    this.checkers = new SafetyCheckers(options.skipChecks);
    this.trace = new Trace(options.traceTail ?? DEFAULT_TRACE_TAIL, options.verbose);
    this.network = new SimNetwork(SimRng.derive(seed, 'network'), { ...this.setup.profile.links });
    this.faults = new FaultInjector(SimRng.derive(seed, 'faults'), this.setup.profile, this.setup.spares, this.setup.founders.length);
    this.clockRng = SimRng.derive(seed, 'clock');
    this.diskRng = SimRng.derive(seed, 'disk');
    this.recorder = new HistoryRecorder<KvInput, KvOutput>(() => this.now);

    const mutations = options.mutations;
    const makeCore: CoreFactory = options.coreFactory ?? ((o, restored) => new RaftCore(o, restored, mutations));
    const founding: Membership = { voters: [...this.setup.founders], learners: [] };
    this.ids = [...this.setup.founders, ...this.setup.spares];
    const drift = this.setup.profile.clockDrift;
    for (const id of this.ids) {
      const bootstrap = this.setup.founders.includes(id) ? founding : { voters: [], learners: [] };
      const random = SimRng.derive(seed, `election-jitter/${id}`).next;
      const server = new SimServer(id, bootstrap, { ...this.setup.core, random }, makeCore, this, options.flaw);
      this.servers.set(id, server);
      const rate = 1 - this.clockRng.next() * drift;
      this.tickRates.set(id, rate);
      this.drawnTickRates.set(id, rate);
      this.tickPhase.set(id, this.clockRng.next() * this.setup.stepsPerTick);
    }
    const clientRng = SimRng.derive(seed, 'clients');
    for (let i = 1; i <= this.setup.clients; i++) {
      const client = new SimClient(`c${i}`, clientRng, this.setup.client, this.recorder);
      this.clients.push(client);
      this.clientsById.set(client.id, client);
    }
    this.nemesisWorld = this.makeNemesisWorld();
    switch (this.setup.scenario) {
      case 'figure-8':
        this.nemesis = new Figure8Nemesis();
        break;
      case 'stale-lease': {
        const margin = normalizeOptions({ ...this.setup.core, id: 'n0', random: () => 0 }).leaseSafetyMarginTicks;
        this.nemesis = new StaleLeaseNemesis(margin);
        this.probe = new ProbeClient(this.recorder, 2 * this.setup.core.electionTicks * this.setup.stepsPerTick);
        break;
      }
      case 'random':
        break;
    }
  }

  run(): SimulationResult {
    let failure: SimulationFailure | undefined;
    let linearizability: Verdict | 'not checked' = 'not checked';
    let operations = 0;
    const safetyTicks = (this.options.ticks ?? DEFAULT_SAFETY_TICKS) * this.setup.safetyScale;
    const livenessBound =
      this.options.livenessTicks ?? LIVENESS_ELECTION_TIMEOUTS * this.setup.core.electionTicks * this.setup.stepsPerTick;
    try {
      this.trace.event(0, '-', 'setup', describeSetup(this.setup));
      for (; this.now < safetyTicks; this.now++) this.step();

      this.startLiveness();
      const start = this.now;
      while (this.liveness?.succeeded !== true) {
        if (this.now - start >= livenessBound) {
          throw new CheckFailure(
            'liveness',
            `no leader committed a new write within ${livenessBound} ticks after healing\n  ` +
              this.ids.map((id) => this.server(id).describe()).join('\n  '),
          );
        }
        this.step();
        this.retireNonMembers();
        this.now++;
      }
      this.livenessTicksUsed = this.now - start;

      this.phase = 'final';
      this.checkers.compareLogs(this.storedLogs());
      const history = this.recorder.history();
      operations = history.length;
      const verdict = checkLinearizable(kvModel, history, { maxSteps: this.options.lincheckMaxSteps ?? DEFAULT_LINCHECK_MAX_STEPS });
      linearizability = verdict.result;
      if (verdict.result === 'illegal') {
        throw new CheckFailure('linearizability', verdict.illegal?.message ?? 'the history is not linearizable');
      }
    } catch (error) {
      failure = this.describeFailure(error);
    }
    return this.result(failure, linearizability, operations);
  }

  /** One step of the world. */
  private step(): void {
    if (this.phase === 'safety') {
      this.faults.step(this);
      this.nemesis?.step(this.nemesisWorld);
    }
    for (const packet of this.network.take(this.now)) this.deliver(packet);
    const running = this.ids.filter((id) => this.server(id).alive && !this.isPaused(id));
    for (const id of running) {
      if (!this.clockTicks(id)) continue;
      this.server(id).tick();
      this.lastTick.set(id, this.now);
    }
    for (const id of running) this.server(id).syncIfDue();
    for (const id of running) this.server(id).pump();
    for (const client of this.clients) client.tick(this);
    this.probe?.tick(this);
    this.liveness?.tick(this);
    if (this.now % FULL_LOG_CHECK_EVERY === FULL_LOG_CHECK_EVERY - 1) this.checkers.compareLogs(this.storedLogs());
  }

  /** Whether server `id`'s clock ticks during this step of the world. */
  private clockTicks(id: NodeId): boolean {
    const rate = this.tickRates.get(id) ?? 1;
    const period = this.setup.stepsPerTick;
    if (rate >= 1 && period === 1) return true;
    if (this.setup.profile.clockJitter) return this.clockRng.chance(rate);
    const phase = (this.tickPhase.get(id) ?? 0) + rate;
    this.tickPhase.set(id, phase >= period ? phase - period : phase);
    return phase >= period;
  }

  private startLiveness(): void {
    this.phase = 'liveness';
    this.network.heal();
    this.network.links = { ...CALM_LINKS, maxLatency: this.setup.profile.links.maxLatency };
    this.faults.forgetRestarts();
    this.pausedUntil.clear();
    this.writesHeld = false;
    for (const id of this.ids) {
      const server = this.server(id);
      if (!server.alive && !server.retired) server.restart();
    }
    this.trace.event(this.now, '-', 'liveness', 'network healed, crashed servers restarted');
    const key = this.setup.client.keys[0] ?? 'k0';
    let attempt = 0;
    this.liveness = new SimClient(
      'liveness',
      SimRng.derive(this.options.seed, 'liveness-client'),
      { ...this.setup.client, thinkTicks: [0, 0], wanderRate: 0 },
      this.recorder,
      () => ({ op: 'put', key, value: `final.${++attempt}` }),
      this.now,
    );
    this.clientsById.set(this.liveness.id, this.liveness);
  }

  /** Liveness phase: an operator shuts down servers that the leader's configuration no longer has. */
  private retireNonMembers(): void {
    const leader = this.leaderId();
    if (leader === undefined) return;
    const { voters, learners } = this.server(leader).core.membership();
    for (const id of this.ids) {
      const server = this.server(id);
      if (server.alive && !voters.includes(id) && !learners.includes(id)) {
        server.retire();
        this.trace.event(this.now, id, 'retire', `not a member of ${leader}'s configuration`);
      }
    }
  }

  private deliver(packet: Packet): void {
    // A paused server handles nothing; what arrives waits in its socket buffer until it resumes.
    const handler = handlingServer(packet);
    const resumeAt = handler === undefined ? undefined : this.pausedUntil.get(handler);
    if (resumeAt !== undefined && resumeAt > this.now) {
      this.network.schedule(resumeAt, packet);
      return;
    }
    switch (packet.kind) {
      case 'raft': {
        const m = packet.message;
        const to = this.servers.get(m.to);
        let dropped: string | undefined;
        if (to === undefined || !to.alive) dropped = 'down';
        else if (this.network.isCut(m.from, m.to)) dropped = 'partitioned';
        else if (this.phase === 'safety' && this.nemesis?.loses(m) === true) dropped = 'lost (nemesis)';
        if (dropped !== undefined || to === undefined) {
          this.trace.message(this.now, 'drop', m, dropped);
          if (packet.reportsSnapshot) this.reportSnapshot(m, packet.senderIncarnation, false);
          return;
        }
        this.trace.message(this.now, 'deliver', m);
        to.receive(m, packet.snapshotData);
        if (this.phase === 'safety') this.nemesis?.onDeliver(m, this.nemesisWorld);
        if (packet.reportsSnapshot) this.reportSnapshot(m, packet.senderIncarnation, true);
        return;
      }
      case 'request': {
        const server = this.servers.get(packet.to);
        const { request } = packet;
        if (server === undefined || !server.alive) {
          this.trace.event(this.now, packet.to, 'req-drop', () => `${request.client}#${request.request} (server down)`);
          return;
        }
        this.trace.event(this.now, packet.to, 'request', () => `${request.client}#${request.request} ${JSON.stringify(request.input)}`);
        server.onRequest(request);
        return;
      }
      case 'reply': {
        const { reply } = packet;
        this.trace.event(this.now, packet.from, 'reply', () => `${reply.client}#${reply.request} ${describeReply(reply)}`);
        this.clientsById.get(packet.to)?.onReply(reply, this.now);
        return;
      }
      case 'snapshot-report': {
        const server = this.servers.get(packet.from);
        if (server === undefined || !server.alive || server.incarnation !== packet.senderIncarnation) return;
        server.core.reportSnapshot(packet.to, packet.ok);
        server.observe();
        return;
      }
    }
  }

  private reportSnapshot(m: Message, incarnation: number, ok: boolean): void {
    const sender = this.servers.get(m.from);
    if (sender === undefined || !sender.alive || sender.incarnation !== incarnation) return;
    const resumeAt = this.pausedUntil.get(m.from);
    if (resumeAt !== undefined && resumeAt > this.now) {
      this.network.schedule(resumeAt, { kind: 'snapshot-report', from: m.from, to: m.to, ok, senderIncarnation: incarnation });
      return;
    }
    sender.core.reportSnapshot(m.to, ok);
    sender.observe();
  }

  // ───────────── ServerHost ─────────────

  sendRaft(from: SimServer, m: Message): void {
    if (this.phase === 'safety') this.nemesis?.onSend(m, this.nemesisWorld);
    let snapshotData;
    if (m.type === 'snapshot') {
      const stored = from.disk.snapshot;
      if (stored === undefined || m.snapshot === undefined || stored.meta.index !== m.snapshot.index) {
        throw new Error(`sim: ${from.id} sends snapshot ${String(m.snapshot?.index)} but stores ${String(stored?.meta.index)}`);
      }
      snapshotData = stored.data;
    }
    const packet: Packet = { kind: 'raft', message: m, reportsSnapshot: m.type === 'snapshot', senderIncarnation: from.incarnation };
    if (snapshotData !== undefined) packet.snapshotData = snapshotData;
    if (this.network.isCut(m.from, m.to)) {
      // The transport notices it cannot reach the peer.
      this.trace.message(this.now, 'drop', m, 'partitioned');
      from.core.reportUnreachable(m.to);
      if (m.type === 'snapshot') this.scheduleSnapshotReport(m, from.incarnation);
      return;
    }
    if (!this.network.send(this.now, packet)) {
      this.trace.message(this.now, 'lose', m);
      if (m.type === 'snapshot') this.scheduleSnapshotReport(m, from.incarnation);
    }
  }

  private scheduleSnapshotReport(m: Message, incarnation: number): void {
    this.network.schedule(this.now + this.network.latency(), {
      kind: 'snapshot-report',
      from: m.from,
      to: m.to,
      ok: false,
      senderIncarnation: incarnation,
    });
  }

  reply(from: SimServer, reply: ClientReply): void {
    this.network.send(this.now, { kind: 'reply', from: from.id, to: reply.client, reply });
  }

  fsyncDelay(): number {
    const [lo, hi] = this.setup.profile.fsyncTicks;
    return this.diskRng.between(lo, hi);
  }

  shouldCompact(): boolean {
    return this.diskRng.chance(this.setup.profile.compactionRate);
  }

  tornCut(length: number): number {
    return this.diskRng.int(length);
  }

  // ───────────── ClientWorld and FaultTarget ─────────────

  /** Servers clients may address and faults may hit: all but the retired ones (no longer listed anywhere). */
  serverIds(): readonly NodeId[] {
    return this.ids.filter((id) => !this.server(id).retired);
  }

  sendRequest(from: string, to: NodeId, request: ClientRequest): void {
    this.network.send(this.now, { kind: 'request', from, to, request });
  }

  // ───────────── FaultTarget ─────────────

  isUp(id: NodeId): boolean {
    return this.server(id).alive;
  }

  isRetired(id: NodeId): boolean {
    return this.server(id).retired;
  }

  crash(id: NodeId, fate: CrashFate): void {
    this.pausedUntil.delete(id);
    this.server(id).crash(fate);
  }

  pause(id: NodeId, ticks: number): void {
    this.pausedUntil.set(id, this.now + ticks);
    this.trace.event(this.now, id, 'pause', `for ${ticks} ticks`);
  }

  private isPaused(id: NodeId): boolean {
    return (this.pausedUntil.get(id) ?? 0) > this.now;
  }

  restart(id: NodeId): void {
    this.server(id).restart();
  }

  liveConfigurations(): Membership[] {
    const out: Membership[] = [];
    for (const id of this.ids) {
      const server = this.server(id);
      if (server.alive) out.push(server.core.membership());
    }
    return out;
  }

  partition(cuts: readonly (readonly [NodeId, NodeId])[], description: string): void {
    this.network.heal();
    for (const [from, to] of cuts) this.network.cut(from, to);
    this.trace.event(this.now, '-', 'partition', description);
  }

  heal(): void {
    this.network.heal();
    this.trace.event(this.now, '-', 'heal', 'all links restored');
  }

  leaderId(): NodeId | undefined {
    let best: { id: NodeId; term: number } | undefined;
    for (const id of this.ids) {
      const server = this.server(id);
      if (!server.alive) continue;
      const s = server.core.status();
      if (s.role === 'leader' && (best === undefined || s.term > best.term)) best = { id, term: s.term };
    }
    return best?.id;
  }

  proposeMembershipChange(leader: NodeId, change: MembershipChange): boolean {
    const server = this.server(leader);
    const result = server.core.proposeMembershipChange(change);
    server.observe();
    this.trace.event(this.now, leader, 'conf', () => {
      if (result.kind === 'accepted') return `${change.kind} ${change.node}: accepted at ${result.term}/${result.index}`;
      return `${change.kind} ${change.node}: ${result.kind === 'dropped' ? `dropped: ${result.reason}` : 'not leader'}`;
    });
    return result.kind === 'accepted';
  }

  transferLeadership(leader: NodeId, to: NodeId): void {
    const server = this.server(leader);
    const result = server.core.transferLeadership(to);
    server.observe();
    this.trace.event(this.now, leader, 'transfer', `to ${to}: ${result.kind}`);
  }

  membershipOf(id: NodeId): Membership {
    return this.server(id).core.membership();
  }

  // ───────────── NemesisWorld ─────────────

  private makeNemesisWorld(): NemesisWorld {
    const sim = this;
    const rng = SimRng.derive(this.options.seed, 'nemesis');
    const voters = [...this.setup.founders];
    return {
      get now() {
        return sim.now;
      },
      stepsPerTick: this.setup.stepsPerTick,
      electionTicks: this.setup.core.electionTicks,
      voters,
      rng,
      status: (id): RaftStatus | undefined => {
        const server = sim.server(id);
        return server.alive ? server.core.status() : undefined;
      },
      highestCommit: () => sim.checkers.highestCommitIndex,
      partitionGroups: (groups, description) => sim.partition(cutsBetween(sim.ids, groups), description),
      cut: (cuts, description) => sim.partition(cuts, description),
      heal: (description) => {
        sim.network.heal();
        sim.trace.event(sim.now, '-', 'heal', description);
      },
      setClockRate: (id, rate, why) => {
        sim.tickRates.set(id, rate);
        sim.trace.event(sim.now, id, 'clock', () => `rate ${rate.toFixed(4)}: ${why}`);
      },
      restoreClockRates: () => {
        for (const [id, rate] of sim.drawnTickRates) sim.tickRates.set(id, rate);
      },
      lastTickAt: (id) => sim.lastTick.get(id) ?? -1,
      redeliver: (m) => {
        sim.network.schedule(sim.now, { kind: 'raft', message: { ...m }, reportsSnapshot: false, senderIncarnation: -1 });
      },
      holdWrites: (held) => {
        sim.writesHeld = held;
        sim.trace.event(sim.now, '-', 'nemesis', held ? 'clients hold their writes' : 'clients write again');
      },
      writesInFlight: () => sim.clients.some((c) => c.writing),
      probe: (target, input) => {
        const probe = sim.probe;
        if (probe === undefined) throw new Error('sim: this scenario has no probe client');
        sim.clientsById.set(probe.id, probe);
        probe.start(sim, target, input);
      },
      probeOutcome: () => sim.probe?.outcome ?? { kind: 'failed', at: sim.now },
      note: (text) => sim.trace.event(sim.now, '-', 'nemesis', text),
    };
  }

  // ───────────── helpers ─────────────

  private server(id: NodeId): SimServer {
    const server = this.servers.get(id);
    if (server === undefined) throw new Error(`sim: no server ${id}`);
    return server;
  }

  private storedLogs(): { node: NodeId; disk: SimServer['disk'] }[] {
    return this.ids.map((id) => ({ node: id, disk: this.server(id).disk }));
  }

  private describeFailure(error: unknown): SimulationFailure {
    const check = error instanceof CheckFailure ? error.check : 'exception';
    let message: string;
    if (error instanceof CheckFailure) message = error.message;
    else if (error instanceof Error) message = (error.stack ?? error.message).split('\n').slice(0, 6).join('\n');
    else message = String(error);
    return { check, message, tick: this.now, phase: this.phase, trace: this.trace.tail() };
  }

  private result(failure: SimulationFailure | undefined, linearizability: Verdict | 'not checked', operations: number): SimulationResult {
    const servers = [...this.servers.values()];
    const sum = (f: (s: SimServer) => number): number => servers.reduce((n, s) => n + f(s), 0);
    const clients = [...this.clients, ...(this.liveness ? [this.liveness] : []), ...(this.probe ? [this.probe] : [])];
    const nemesis: NemesisStats = this.nemesis?.stats ?? { rounds: 0, strikes: 0, abandoned: 0 };
    const stats: SimulationStats = {
      events: this.trace.events,
      elections: this.checkers.leaderElections,
      committed: this.checkers.highestCommitted,
      crashes: this.faults.crashes,
      pauses: this.faults.pauses,
      restarts: sum((s) => s.stats.restarts),
      partitions: this.faults.partitions,
      membershipChanges: this.faults.membershipChanges,
      compactions: sum((s) => s.stats.compactions),
      snapshotsInstalled: sum((s) => s.stats.snapshotsInstalled),
      tornRecordsDropped: sum((s) => s.stats.tornRecordsDropped),
      unsyncedRecordsKept: sum((s) => s.stats.unsyncedRecordsKept),
      appliedDuringWrite: sum((s) => s.stats.appliedDuringWrite),
      opsOk: clients.reduce((n, c) => n + c.stats.ok, 0),
      opsUnknown: clients.reduce((n, c) => n + c.stats.unknown, 0),
      opsDiscarded: clients.reduce((n, c) => n + c.stats.discarded, 0),
      livenessTicks: this.livenessTicksUsed,
      nemesisRounds: nemesis.rounds,
      nemesisStrikes: nemesis.strikes,
      nemesisAbandoned: nemesis.abandoned,
    };
    for (const value of Object.values(stats)) this.trace.mixValue(value);
    this.trace.mixValue(linearizability);
    const result: SimulationResult = {
      seed: this.options.seed,
      passed: failure === undefined,
      digest: this.trace.digest(),
      setup: describeSetup(this.setup),
      scenario: this.setup.scenario,
      stepsPerTick: this.setup.stepsPerTick,
      ticks: this.now,
      operations,
      linearizability,
      stats,
    };
    if (failure !== undefined) result.failure = failure;
    return result;
  }
}

/** The server that handles a packet on arrival (undefined: a client). */
function handlingServer(packet: Packet): NodeId | undefined {
  switch (packet.kind) {
    case 'raft':
      return packet.message.to;
    case 'request':
      return packet.to;
    case 'snapshot-report':
      return packet.from;
    case 'reply':
      return undefined;
  }
}

function describeReply(reply: ClientReply): string {
  switch (reply.kind) {
    case 'ok':
      return `ok ${JSON.stringify(reply.output)}`;
    case 'rejected':
      return `rejected (leader hint ${reply.leaderHint || '-'})`;
    case 'lost':
      return 'lost';
  }
}

/** Runs one seed. Never throws for a failing check: the result says what failed. */
export function runSimulation(options: SimulationOptions): SimulationResult {
  return new Simulation(options).run();
}
