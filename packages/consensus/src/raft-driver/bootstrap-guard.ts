// The check a Raft member makes before it bootstraps an empty data dir from --peers: has this
// member been part of its group before? If so, its data is lost, and it must not start as if new.
//
// WHY. Raft's safety rests on every member remembering, across crashes, the vote it cast in its
// term and the entries it acknowledged: a leader counts those toward a majority. A member whose
// data dir comes back empty under the same id (a Kubernetes pod whose volume was lost, a wrong
// --data-dir) has forgotten both. Bootstrapping it again lets it vote a second time in a term
// (two leaders in one term) or help form a majority that lacks a committed entry (an acknowledged
// write lost). etcd refuses the same situation (--initial-cluster-state, "member has already been
// bootstrapped").
//
// HOW. Before bootstrapping, the member asks every peer of --peers (Consensus.Probe) what it knows
// of the group, retrying for a bounded window (the peers of a fresh cluster start at about the same
// time). Each peer records, in its own data dir, the members it has heard from while they belonged
// to the group (heard-from-ledger.ts). The member refuses to start when a peer
//   * has the group with Raft state and has heard from this member while it was a member: it
//     took part in the group, so it had state; or
//   * (with --join) lists this member as a voter: a learner is promoted only once it has caught up,
//     so it had the log.
// A member of a new group that starts late, after the others elected a leader, was never heard
// from, and bootstraps: the peers having a log is not by itself evidence, or a fresh cluster whose
// third pod is slow to schedule would never form.
// It bootstraps once every peer has answered without such evidence (running, or itself empty and
// asking), or when the window ends with some peers unanswered.
//
// RESIDUAL RISK. A member that lost its data while every peer that heard from it is unreachable
// (its whole group down, or partitioned away) bootstraps anyway after the window; so does one whose
// peers run a version without Probe, or lost their own record of it.

import { Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConsensusClient, ProbeGroupState, ProbeResponse } from '@concord/proto/consensus';
import { CLIENT_CHANNEL_OPTIONS, type Logger, type OptionSpec } from '@concord/runtime';
import type { ConsensusStatus } from '../types.js';
import { HeardFromLedger } from './heard-from-ledger.js';
import type { ConsensusPeerService, ProbeSubject } from './peer-service.js';
import { RaftStorage } from './raft-storage.js';

/** How long a member with an empty data dir asks its peers before it bootstraps anyway. */
export const DEFAULT_BOOTSTRAP_CHECK_MS = 5_000;
/** Pause between two rounds of probes of the peers that have not answered for good. */
export const PROBE_RETRY_MS = 250;
/** Deadline of one Probe call. */
export const PROBE_CALL_MS = 1_000;
/** How often a running member forgets, in its record, the members removed from its group. */
export const MEMBERSHIP_REFRESH_MS = 1_000;
/**
 * WAL bytes beyond which a data dir certainly holds Raft state: a member's first record is its
 * small bootstrap record, synced before anything else is written.
 */
const SURELY_STATE_WAL_BYTES = 64 * 1024;

/** The settings every role that runs a Raft group exposes for this check. */
export const BOOTSTRAP_GUARD_OPTION_SPECS = {
  bootstrapCheckTimeout: {
    kind: 'duration',
    flag: 'bootstrap-check-timeout',
    env: 'CONCORD_BOOTSTRAP_CHECK_TIMEOUT',
    default: DEFAULT_BOOTSTRAP_CHECK_MS,
    min: 1,
    max: 600_000,
    doc:
      'Raft: with an empty data dir, this member first asks the --peers whether it belonged to the group before; if one says so, ' +
      'it lost its data and refuses to start (exit status 2). How long to wait for peers that do not answer yet before ' +
      'bootstrapping without them.',
  },
  forceBootstrap: {
    kind: 'bool',
    flag: 'force-bootstrap',
    env: 'CONCORD_FORCE_BOOTSTRAP',
    default: false,
    doc:
      'Raft: bootstrap an empty data dir without asking the peers. Unsafe for a member that lost its data: it forgets its ' +
      'votes and log, which can elect two leaders in one term or lose acknowledged writes.',
  },
} as const satisfies Record<string, OptionSpec>;

// ---------------------------------------------------------------- the decision (pure)

/** What one peer said, or why it said nothing. */
export type PeerProbe =
  | { peerId: string; address: string; kind: 'unreachable'; error: string }
  | ({ peerId: string; address: string; kind: 'answered' } & Omit<ProbeResponse, 'state'> & { state: PeerGroupState });

export type PeerGroupState = 'absent' | 'bootstrapping' | 'recovering' | 'running';

export type BootstrapDecision =
  /** This member belonged to the group: it lost its data. */
  | { kind: 'refuse'; evidence: Extract<PeerProbe, { kind: 'answered' }>; reason: 'heard_from' | 'voter' }
  /** No peer knows this member (`unsettled`: peers passed over because the window ended). */
  | { kind: 'bootstrap'; unsettled: PeerProbe[] }
  /** Ask the unsettled peers again. */
  | { kind: 'wait'; unsettled: PeerProbe[] };

export interface BootstrapInput {
  memberId: string;
  /** --join: this member is new to a running group, not one of its founders. */
  join: boolean;
  /** The peers asked (id → address), this member excluded. */
  peers: ReadonlyMap<string, string>;
  /** The latest answer of each peer asked so far. */
  probes: ReadonlyMap<string, PeerProbe>;
  /** The check's window has ended. */
  windowOver: boolean;
}

function hasRaftState(probe: Extract<PeerProbe, { kind: 'answered' }>): boolean {
  return probe.term > 0 || probe.commitIndex > 0 || probe.appliedIndex > 0 || probe.snapshotIndex > 0;
}

/**
 * Whether a member with an empty data dir may bootstrap, given what its peers said: see the top of
 * this file. An answer is final when the peer runs the group or is itself empty and asking; a peer
 * that is unreachable, does not host the group yet, or is still recovering its log is asked again
 * until the window ends (a recovering peer that has heard from this member is evidence at once).
 */
export function decideBootstrap(input: BootstrapInput): BootstrapDecision {
  const unsettled: PeerProbe[] = [];
  for (const [peerId, address] of input.peers) {
    const probe = input.probes.get(peerId) ?? { peerId, address, kind: 'unreachable', error: 'not asked yet' };
    if (probe.kind === 'unreachable') {
      unsettled.push(probe);
      continue;
    }
    const member = probe.voters.includes(input.memberId) || probe.learners.includes(input.memberId);
    if (probe.state === 'running' && hasRaftState(probe) && probe.heardFromMember && member) {
      return { kind: 'refuse', evidence: probe, reason: 'heard_from' };
    }
    // The peer's record keeps members only (removed ones are forgotten), so while it recovers
    // its word is evidence enough.
    if (probe.state === 'recovering' && probe.heardFromMember) return { kind: 'refuse', evidence: probe, reason: 'heard_from' };
    if (input.join && probe.state === 'running' && probe.voters.includes(input.memberId)) {
      return { kind: 'refuse', evidence: probe, reason: 'voter' };
    }
    if (probe.state === 'absent' || probe.state === 'recovering') unsettled.push(probe);
  }
  if (unsettled.length === 0 || input.windowOver) return { kind: 'bootstrap', unsettled };
  return { kind: 'wait', unsettled };
}

/** A member with an empty data dir that belonged to its group: it must not start. */
export class BootstrapRefusedError extends Error {
  constructor(
    message: string,
    readonly evidence: Extract<PeerProbe, { kind: 'answered' }>,
  ) {
    super(message);
    this.name = 'BootstrapRefusedError';
  }
}

/** The refusal, naming the member, the peer that knows it, and the ways out. */
export function refusalMessage(
  groupId: string,
  memberId: string,
  dataDir: string,
  decision: Extract<BootstrapDecision, { kind: 'refuse' }>,
): string {
  const peer = decision.evidence;
  const knows =
    decision.reason === 'voter'
      ? `${peer.peerId} at ${peer.address} lists ${memberId} as a voter of ${groupId}, and a learner is promoted only once it holds the log`
      : `${peer.peerId} at ${peer.address} (term ${peer.term}, commit ${peer.commitIndex}) has heard from ${memberId} as a member of ${groupId} before`;
  return (
    `member ${memberId} of group ${groupId} refuses to start: its data dir ${dataDir} holds no Raft state, but the group already ` +
    `exists and ${knows}, so ${memberId} has lost its data. Started empty it would forget the votes it cast and the entries it ` +
    `acknowledged, which can elect two leaders in one term or lose acknowledged writes. If its data is elsewhere (a volume not ` +
    `mounted, another --data-dir), start it on that data. Otherwise replace it: concord member remove ${groupId} ${memberId}, then ` +
    `add a new, empty member with --join (docs/operations.md, "Replace a dead replica").`
  );
}

// ---------------------------------------------------------------- the data dir

/**
 * Whether the Raft data under `dataDir` is empty, as RaftGroup.start decides it: no bootstrap
 * record, no snapshot, no entries, term 0 (so it would bootstrap from its peers).
 */
export async function raftDataIsEmpty(dataDir: string): Promise<boolean> {
  const dir = join(dataDir, 'raft');
  if (await exists(join(dir, 'snapshot.bin'))) return false;
  let walBytes = 0;
  let segments = 0;
  try {
    for (const name of await readdir(join(dir, 'wal'))) {
      if (!name.endsWith('.wal')) continue;
      segments += 1;
      walBytes += (await stat(join(dir, 'wal', name))).size;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  if (segments === 0) return true;
  if (walBytes > SURELY_STATE_WAL_BYTES) return false;
  // Small enough to read: replay it as the group would (a torn tail is cut off the same way).
  const { storage, recovered } = await RaftStorage.open({ dir });
  await storage.close();
  return recovered.bootstrap === undefined && recovered.snapshot === undefined && recovered.entries.length === 0 && recovered.hardState.term === 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

// ---------------------------------------------------------------- asking the peers

const PROBE_CHANNEL_OPTIONS = {
  ...CLIENT_CHANNEL_OPTIONS,
  // A peer that is not listening yet (a fresh cluster starting) is dialled again soon, not after
  // grpc-js's default backoff of one second and more.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
  'grpc.use_local_subchannel_pool': 1,
};

export interface ProbePeersOptions {
  groupId: string;
  memberId: string;
  join: boolean;
  /** The peers to ask (id → host:port), this member excluded. */
  peers: ReadonlyMap<string, string>;
  credentials: ChannelCredentials;
  /** The window: see BOOTSTRAP_GUARD_OPTION_SPECS.bootstrapCheckTimeout. */
  timeoutMs: number;
  /** See PROBE_RETRY_MS and PROBE_CALL_MS. */
  retryMs?: number;
  callTimeoutMs?: number;
}

/** Asks the peers, round after round until the decision is not `wait` (at the latest when the window ends). */
export async function probePeers(options: ProbePeersOptions): Promise<Exclude<BootstrapDecision, { kind: 'wait' }>> {
  const retryMs = options.retryMs ?? PROBE_RETRY_MS;
  const callTimeoutMs = options.callTimeoutMs ?? PROBE_CALL_MS;
  const deadline = Date.now() + options.timeoutMs;
  const clients = new Map([...options.peers].map(([peerId, address]) => [peerId, new ConsensusClient(address, options.credentials, PROBE_CHANNEL_OPTIONS)]));
  const probes = new Map<string, PeerProbe>();
  try {
    let toAsk = [...options.peers.keys()];
    for (;;) {
      await Promise.all(
        toAsk.map(async (peerId) => {
          const address = options.peers.get(peerId)!;
          const callMs = Math.max(1, Math.min(callTimeoutMs, deadline - Date.now()));
          probes.set(peerId, await probeOne(clients.get(peerId)!, peerId, address, options.groupId, options.memberId, callMs));
        }),
      );
      const decision = decideBootstrap({ memberId: options.memberId, join: options.join, peers: options.peers, probes, windowOver: Date.now() >= deadline });
      if (decision.kind !== 'wait') return decision;
      toAsk = decision.unsettled.map((probe) => probe.peerId);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(retryMs, deadline - Date.now()))));
    }
  } finally {
    for (const client of clients.values()) client.close();
  }
}

const STATES: Readonly<Record<number, PeerGroupState>> = {
  [ProbeGroupState.PROBE_GROUP_STATE_ABSENT]: 'absent',
  [ProbeGroupState.PROBE_GROUP_STATE_BOOTSTRAPPING]: 'bootstrapping',
  [ProbeGroupState.PROBE_GROUP_STATE_RECOVERING]: 'recovering',
  [ProbeGroupState.PROBE_GROUP_STATE_RUNNING]: 'running',
};

function probeOne(client: ConsensusClient, peerId: string, address: string, groupId: string, memberId: string, callMs: number): Promise<PeerProbe> {
  return new Promise((resolve) => {
    client.probe({ groupId, memberId }, new Metadata(), { deadline: Date.now() + callMs }, (error, response) => {
      if (error !== null || response === undefined) {
        resolve({ peerId, address, kind: 'unreachable', error: error?.message ?? 'no answer' });
        return;
      }
      // A state this version does not know: treat the peer as one that does not host the group.
      resolve({ peerId, address, kind: 'answered', ...response, state: STATES[response.state] ?? 'absent' });
    });
  });
}

// ---------------------------------------------------------------- wiring into a process

export interface BootstrapGuardOptions {
  groupId: string;
  memberId: string;
  dataDir: string;
  /** The process's peer service: Probe answers for this group from here on. */
  peerService: ConsensusPeerService;
  logger: Logger;
}

export interface BootstrapCheck {
  /** --peers: the group's founding members (this one included), or with `join` its running members. */
  peers: Readonly<Record<string, string>>;
  join: boolean;
  credentials: ChannelCredentials;
  timeoutMs: number;
  /** --force-bootstrap: skip the check. */
  force: boolean;
}

/**
 * One group's side of the check in a process: answers the peers' Probe for the group (from before
 * it starts until it stops), records whom it hears from, and runs the check itself when its data
 * dir is empty. Call open() before the group starts, check() before group.start(), running() after
 * it, and close() when the group stops.
 */
export class BootstrapGuard implements ProbeSubject {
  private status: (() => ConsensusStatus | undefined) | undefined;
  private readonly detach: () => void;
  private refreshTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly options: BootstrapGuardOptions,
    /** The data dir held no Raft state at start. */
    readonly emptyDataDir: boolean,
    private readonly ledger: HeardFromLedger,
  ) {
    this.detach = options.peerService.attachProbeSubject(options.groupId, this);
  }

  static async open(options: BootstrapGuardOptions): Promise<BootstrapGuard> {
    const empty = await raftDataIsEmpty(options.dataDir);
    const ledger = await HeardFromLedger.open(options.dataDir, options.logger);
    return new BootstrapGuard(options, empty, ledger);
  }

  /** With an empty data dir: asks the peers, and throws BootstrapRefusedError if this member belonged to the group. */
  async check(check: BootstrapCheck): Promise<void> {
    if (!this.emptyDataDir) return;
    const { groupId, memberId, dataDir, logger } = this.options;
    const peers = new Map(Object.entries(check.peers).filter(([peerId]) => peerId !== memberId));
    if (check.force) {
      logger.warn({ group_id: groupId }, 'bootstrapping an empty data dir without asking the peers (--force-bootstrap)');
      return;
    }
    if (peers.size === 0) return;
    const decision = await probePeers({ groupId, memberId, join: check.join, peers, credentials: check.credentials, timeoutMs: check.timeoutMs });
    if (decision.kind === 'refuse') throw new BootstrapRefusedError(refusalMessage(groupId, memberId, dataDir, decision), decision.evidence);
    if (decision.unsettled.length > 0) {
      logger.warn(
        {
          group_id: groupId,
          unanswered: decision.unsettled.map((probe) => ({ peer: probe.peerId, address: probe.address, ...(probe.kind === 'unreachable' ? { error: probe.error } : { state: probe.state }) })),
        },
        'starting with an empty data dir: not every peer answered whether this member belonged to the group before',
      );
    } else {
      logger.info({ group_id: groupId, peers: [...peers.keys()] }, 'starting with an empty data dir: no peer has heard from this member before');
    }
  }

  /** The group runs: Probe answers from its status, and members removed from it are forgotten. */
  running(status: () => ConsensusStatus | undefined): void {
    this.status = status;
    this.refreshMembers();
    this.refreshTimer = setInterval(() => this.refreshMembers(), MEMBERSHIP_REFRESH_MS);
    this.refreshTimer.unref();
  }

  /** Stops answering for the group; resolves once the record is on disk. */
  async close(): Promise<void> {
    clearInterval(this.refreshTimer);
    this.detach();
    await this.ledger.flush();
  }

  answer(askingMember: string): ProbeResponse {
    const base = ProbeResponse.fromPartial({
      state: this.emptyDataDir ? ProbeGroupState.PROBE_GROUP_STATE_BOOTSTRAPPING : ProbeGroupState.PROBE_GROUP_STATE_RECOVERING,
      memberId: this.options.memberId,
      heardFromMember: this.ledger.has(askingMember),
    });
    if (this.status === undefined) return base;
    const status = this.currentStatus();
    if (status === undefined) return { ...base, state: ProbeGroupState.PROBE_GROUP_STATE_ABSENT, heardFromMember: false };
    const voters = status.members.filter((member) => member.voter).map((member) => member.memberId);
    const learners = status.members.filter((member) => !member.voter).map((member) => member.memberId);
    return {
      ...base,
      state: ProbeGroupState.PROBE_GROUP_STATE_RUNNING,
      term: status.term,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      snapshotIndex: status.snapshotIndex,
      voters,
      learners,
      heardFromMember: base.heardFromMember && (voters.includes(askingMember) || learners.includes(askingMember)),
    };
  }

  heard(from: string): void {
    if (this.ledger.has(from) || this.status === undefined) return;
    // Only members count: a removed member that still runs keeps sending, and its id may come
    // back as a new member that must be let in.
    if (this.currentStatus()?.members.some((member) => member.memberId === from) === true) this.ledger.add(from);
  }

  private currentStatus(): ConsensusStatus | undefined {
    try {
      return this.status?.();
    } catch {
      return undefined;
    }
  }

  private refreshMembers(): void {
    const status = this.currentStatus();
    if (status !== undefined) this.ledger.retainOnly(new Set(status.members.map((member) => member.memberId)));
  }
}
