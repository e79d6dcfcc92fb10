// concord.v1.Shard: the gRPC face of one shard replica. Every request is checked in the same order:
// field limits (INVALID_ARGUMENT), then ring ownership (WRONG_SHARD), then leadership (NOT_LEADER),
// so a request that fails a check changed nothing. Writes go through the consensus group; reads come
// from the local state machine, behind a read barrier unless the caller opted into stale reads.

import { status as grpcStatus } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import {
  MembershipChangeKind,
  ShardCommand,
  type ShardChangeMembershipRequest,
  type ShardChangeMembershipResponse,
  type ShardCommandResult,
  type ShardDeleteRequest,
  type ShardDeleteResponse,
  type ShardGetRequest,
  type ShardGetResponse,
  type ShardPutRequest,
  type ShardPutResponse,
  type ShardScanRequest,
  type ShardScanResponse,
  type ShardServer,
  type ShardStatusRequest,
  type ShardStatusResponse,
  type ShardTransferLeadershipRequest,
  type ShardTransferLeadershipResponse,
} from '@concord/proto/shard';
import { describeMembershipChange, sortMembers, type ConsensusGroup, type LeaderHint, type MembershipChange } from '@concord/consensus';
import type { HashRing } from '@concord/ring';
import {
  ID_DOC,
  ID_PATTERN,
  ServiceError,
  serverStream,
  tracer,
  unary,
  validateConsistency,
  validateKey,
  validateScanLimit,
  validateScanRange,
  validateValue,
} from '@concord/runtime';
import type { KvStateMachine } from './kv-state-machine.js';

/** Fully qualified service name, for health status. */
export const SHARD_SERVICE_NAME = 'concord.v1.Shard';

/**
 * At most this many keys per ScanResponse: big enough that per-message overhead is small, small
 * enough that a client sees the first keys quickly and a cancelled scan stops early.
 */
export const SCAN_BATCH_MAX_KVS = 256;

/**
 * A batch also closes once its keys and values reach this many bytes (a batch always holds at least
 * one key). With values of up to 1 MiB a message stays near 2 MiB, under gRPC's default 4 MiB
 * receive limit, which a batch of 256 maximal values would exceed 64 times over.
 */
export const SCAN_BATCH_MAX_BYTES = 1024 * 1024;

/** Trailing metadata keys of the Shard contract (proto/concord/v1/shard.proto). */
export const METADATA = {
  reason: 'concord-reason',
  ringEpoch: 'concord-ring-epoch',
  leader: 'concord-leader',
  currentVersion: 'concord-current-version',
} as const;

/** Values of `concord-reason`. The last two tell a client whether retrying a write is safe. */
export const REASONS = {
  wrongShard: 'WRONG_SHARD',
  notLeader: 'NOT_LEADER',
  proposalDropped: 'PROPOSAL_DROPPED',
  outcomeUnknown: 'OUTCOME_UNKNOWN',
} as const;

export interface ShardHandlersOptions {
  groupId: string;
  /** This replica's member id, reported by Status until the group is attached. */
  memberId: string;
  /** The ring this replica checks ownership against. */
  ring: HashRing;
  stateMachine: KvStateMachine;
  /** See SCAN_BATCH_MAX_KVS. */
  scanBatchMaxKvs?: number;
  /** See SCAN_BATCH_MAX_BYTES. */
  scanBatchMaxBytes?: number;
}

/**
 * The Shard methods as plain async functions. The consensus group is attached once it has
 * recovered: the server must be listening first so the group can learn its own address (port 0),
 * and until then every call answers UNAVAILABLE.
 */
export class ShardHandlers {
  private group: ConsensusGroup<ShardCommandResult> | undefined;
  private readonly scanBatchMaxKvs: number;
  private readonly scanBatchMaxBytes: number;
  /** Get, Put, Delete and Scan calls in progress. */
  private inFlight = 0;
  private draining = false;
  private readonly drained: (() => void)[] = [];

  constructor(private readonly options: ShardHandlersOptions) {
    this.scanBatchMaxKvs = options.scanBatchMaxKvs ?? SCAN_BATCH_MAX_KVS;
    this.scanBatchMaxBytes = options.scanBatchMaxBytes ?? SCAN_BATCH_MAX_BYTES;
    if (!Number.isInteger(this.scanBatchMaxKvs) || this.scanBatchMaxKvs < 1) {
      throw new Error(`scanBatchMaxKvs: must be a positive integer (got ${String(options.scanBatchMaxKvs)})`);
    }
    if (!Number.isInteger(this.scanBatchMaxBytes) || this.scanBatchMaxBytes < 1) {
      throw new Error(`scanBatchMaxBytes: must be a positive integer (got ${String(options.scanBatchMaxBytes)})`);
    }
  }

  /** Starts serving with a started consensus group whose state machine is options.stateMachine. */
  attachGroup(group: ConsensusGroup<ShardCommandResult>): void {
    this.group = group;
  }

  /**
   * Refuses every new Get, Put, Delete and Scan (UNAVAILABLE, `concord-reason: NOT_LEADER` without
   * a leader: nothing was proposed, so a client retries on another replica) and resolves once the
   * calls in progress have ended, or after `timeoutMs`. A shutting-down Raft leader drains before it
   * stops hearing its peers, so the writes it has proposed can still commit and be acknowledged.
   */
  drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.drained.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async get(request: ShardGetRequest): Promise<ShardGetResponse> {
    this.enter();
    try {
      validateKey(request.key);
      const consistency = validateConsistency(request.consistency);
      this.checkOwnership(request.key, request.ringEpoch);
      await this.readBarrier(consistency);
      const stored = this.options.stateMachine.get(request.key);
      if (stored === undefined) return { found: false, value: Buffer.alloc(0), version: 0 };
      return { found: true, value: stored.value, version: stored.version };
    } finally {
      this.leave();
    }
  }

  async put(request: ShardPutRequest): Promise<ShardPutResponse> {
    this.enter();
    try {
      validateKey(request.key);
      validateValue(request.value);
      this.checkOwnership(request.key, request.ringEpoch);
      const result = await this.propose('put', {
        command: { $case: 'put', value: { key: request.key, value: request.value, expectedVersion: request.expectedVersion } },
      });
      if (!result.applied) throw versionMismatch(request.key, result.version, request.expectedVersion);
      return { version: result.version };
    } finally {
      this.leave();
    }
  }

  async delete(request: ShardDeleteRequest): Promise<ShardDeleteResponse> {
    this.enter();
    try {
      validateKey(request.key);
      this.checkOwnership(request.key, request.ringEpoch);
      const result = await this.propose('delete', {
        command: { $case: 'delete', value: { key: request.key, expectedVersion: request.expectedVersion } },
      });
      if (!result.applied) throw versionMismatch(request.key, result.version, request.expectedVersion);
      return { deleted: result.existed, previousVersion: result.version };
    } finally {
      this.leave();
    }
  }

  /**
   * Streams the keys of a prefix or range in batches. All batches come from one consistent cut of
   * the state taken after the read barrier, however slowly the client reads them.
   */
  async *scan(request: ShardScanRequest, isCancelled: () => boolean = () => false): AsyncGenerator<ShardScanResponse> {
    this.enter();
    try {
      yield* this.scanBatches(request, isCancelled);
    } finally {
      this.leave();
    }
  }

  private async *scanBatches(request: ShardScanRequest, isCancelled: () => boolean): AsyncGenerator<ShardScanResponse> {
    const limit = validateScanLimit(request.limit);
    const consistency = validateConsistency(request.consistency);
    validateScanRange(request);
    this.checkRingEpoch(request.ringEpoch, undefined);
    await this.readBarrier(consistency);
    const entries = this.options.stateMachine.scan({
      prefix: request.prefix,
      startKey: request.startKey,
      endKey: request.endKey,
      limit,
    });
    let batch: ShardScanResponse['kvs'] = [];
    let batchBytes = 0;
    for (const kv of entries) {
      const size = Buffer.byteLength(kv.key, 'utf8') + kv.value.byteLength;
      if (batch.length > 0 && (batch.length >= this.scanBatchMaxKvs || batchBytes + size > this.scanBatchMaxBytes)) {
        if (isCancelled()) return;
        yield { kvs: batch };
        batch = [];
        batchBytes = 0;
      }
      batch.push(kv);
      batchBytes += size;
    }
    if (batch.length > 0 && !isCancelled()) yield { kvs: batch };
  }

  status(): ShardStatusResponse {
    const group = this.requireGroup();
    const consensus = group.status();
    return {
      groupId: this.options.groupId,
      memberId: consensus.memberId,
      role: consensus.role.toUpperCase(),
      term: consensus.term,
      commitIndex: consensus.commitIndex,
      appliedIndex: consensus.appliedIndex,
      keyCount: this.options.stateMachine.keyCount,
      ringEpoch: this.options.ring.epoch,
      engine: consensus.engine,
      leaderAddress: consensus.leaderAddress ?? '',
    };
  }

  /**
   * One membership step, on the leader. Not counted as a call in progress: it changes no key, and a
   * draining leader still resolves it (the driver answers once the change applied or it stopped).
   */
  async changeMembership(request: ShardChangeMembershipRequest): Promise<ShardChangeMembershipResponse> {
    const change = membershipChangeOf(request);
    const group = this.requireGroup();
    const outcome = await group.changeMembership(change);
    switch (outcome.kind) {
      case 'applied': {
        return { members: sortMembers(outcome.members).map((m) => ({ memberId: m.memberId, address: m.address, voter: m.voter })), index: outcome.index };
      }
      case 'not_leader':
        throw this.notLeader(outcome);
      case 'rejected':
        throw new ServiceError(
          grpcStatus.FAILED_PRECONDITION,
          `group ${this.options.groupId} refused to ${describeMembershipChange(change)}: ${outcome.reason}; ${adviceFor(change)}`,
        );
    }
  }

  /** Shard.TransferLeadership: see the proto. */
  async transferLeadership(request: ShardTransferLeadershipRequest): Promise<ShardTransferLeadershipResponse> {
    if (!ID_PATTERN.test(request.memberId)) {
      throw new ServiceError(grpcStatus.INVALID_ARGUMENT, `member_id: must be ${ID_DOC} (got ${JSON.stringify(request.memberId)})`);
    }
    const outcome = await this.requireGroup().transferLeadership(request.memberId);
    switch (outcome.kind) {
      case 'transferred':
        return { leaderId: outcome.leaderId, term: outcome.term };
      case 'not_leader':
        throw this.notLeader(outcome);
      case 'rejected':
        throw new ServiceError(
          grpcStatus.FAILED_PRECONDITION,
          `group ${this.options.groupId} refused to hand its leadership to ${request.memberId}: ${outcome.reason}`,
        );
      case 'failed':
        throw new ServiceError(
          grpcStatus.UNAVAILABLE,
          `group ${this.options.groupId} did not hand its leadership to ${request.memberId}: ${outcome.reason}; check concord status, then retry`,
        );
    }
  }

  private enter(): void {
    if (this.draining) {
      throw new ServiceError(
        grpcStatus.UNAVAILABLE,
        `NOT_LEADER: member ${this.options.memberId} of group ${this.options.groupId} is shutting down; nothing was done, retry on another replica`,
        { [METADATA.reason]: REASONS.notLeader },
      );
    }
    this.inFlight++;
  }

  private leave(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.draining) for (const resolve of this.drained.splice(0)) resolve();
  }

  /** WRONG_SHARD unless `key` is this group's under the ring and epoch the caller routed with. */
  private checkOwnership(key: string, ringEpoch: number): void {
    this.checkRingEpoch(ringEpoch, key);
    const owner = this.options.ring.ownerOf(key);
    if (owner !== this.options.groupId) {
      throw this.wrongShard(`key ${quoteKey(key)} belongs to group ${owner} at ring epoch ${this.options.ring.epoch}`);
    }
  }

  /** 0 means the caller did not route with a ring (e.g. an operator's grpcurl): skip the check. */
  private checkRingEpoch(ringEpoch: number, key: string | undefined): void {
    const epoch = this.options.ring.epoch;
    if (ringEpoch === 0 || ringEpoch === epoch) return;
    const what = key === undefined ? 'request' : `key ${quoteKey(key)}`;
    throw this.wrongShard(`${what} was routed with ring epoch ${ringEpoch}, but group ${this.options.groupId} is at ring epoch ${epoch}`);
  }

  private wrongShard(detail: string): ServiceError {
    return new ServiceError(grpcStatus.FAILED_PRECONDITION, `WRONG_SHARD: ${detail}; refresh the ring`, {
      [METADATA.reason]: REASONS.wrongShard,
      [METADATA.ringEpoch]: String(this.options.ring.epoch),
    });
  }

  private async readBarrier(consistency: ReadConsistency): Promise<void> {
    const group = this.requireGroup();
    // A serializable read is the caller's explicit opt-in to stale data: answer from local state.
    if (consistency === ReadConsistency.READ_CONSISTENCY_SERIALIZABLE) return;
    const outcome = await group.readBarrier();
    if (outcome.kind === 'not_leader') throw this.notLeader(outcome);
  }

  private async propose(operation: 'put' | 'delete', command: ShardCommand): Promise<ShardCommandResult> {
    const group = this.requireGroup();
    const encoded = ShardCommand.encode(command).finish();
    const outcome = await tracer.startActiveSpan(`shard.propose ${operation}`, async (span) => {
      span.setAttribute('concord.group_id', this.options.groupId);
      try {
        const result = await group.propose(encoded);
        span.setAttribute('concord.propose.outcome', result.kind);
        if (result.kind === 'applied') span.setAttribute('concord.index', result.index);
        return result;
      } catch (error) {
        span.recordException(error instanceof Error ? error : String(error));
        throw error;
      } finally {
        span.end();
      }
    });
    switch (outcome.kind) {
      case 'applied':
        return outcome.result;
      case 'not_leader':
        throw this.notLeader(outcome);
      case 'dropped':
        return this.unavailable(
          `proposal dropped by group ${this.options.groupId} (${outcome.reason}); nothing was written, retry`,
          REASONS.proposalDropped,
        );
      case 'unknown':
        return this.unavailable(
          `outcome unknown in group ${this.options.groupId} (${outcome.reason}); the write may or may not have been applied, read the key before retrying`,
          REASONS.outcomeUnknown,
        );
    }
  }

  private unavailable(message: string, reason: string): never {
    throw new ServiceError(grpcStatus.UNAVAILABLE, message, { [METADATA.reason]: reason });
  }

  private notLeader(hint: LeaderHint): ServiceError {
    const leader =
      hint.leaderAddress !== undefined && hint.leaderAddress !== ''
        ? `the leader is ${hint.leaderId ?? 'a member'} at ${hint.leaderAddress}`
        : 'the leader is not known yet; retry shortly';
    const metadata: Record<string, string> = { [METADATA.reason]: REASONS.notLeader };
    if (hint.leaderAddress !== undefined && hint.leaderAddress !== '') metadata[METADATA.leader] = hint.leaderAddress;
    return new ServiceError(
      grpcStatus.UNAVAILABLE,
      `NOT_LEADER: member ${this.options.memberId} is not the leader of group ${this.options.groupId}; ${leader}`,
      metadata,
    );
  }

  private requireGroup(): ConsensusGroup<ShardCommandResult> {
    if (this.group === undefined) {
      throw new ServiceError(
        grpcStatus.UNAVAILABLE,
        `group ${this.options.groupId} is still recovering its log on member ${this.options.memberId}; retry shortly`,
      );
    }
    return this.group;
  }
}

/** The handlers adapted to grpc-js, for ConcordServer. */
export function createShardServer(handlers: ShardHandlers): ShardServer {
  return {
    get: unary((request: ShardGetRequest) => handlers.get(request)),
    put: unary((request: ShardPutRequest) => handlers.put(request)),
    delete: unary((request: ShardDeleteRequest) => handlers.delete(request)),
    scan: serverStream((request: ShardScanRequest, call) => handlers.scan(request, () => call.cancelled)),
    status: unary(async (_request: ShardStatusRequest) => handlers.status()),
    changeMembership: unary((request: ShardChangeMembershipRequest) => handlers.changeMembership(request)),
    transferLeadership: unary((request: ShardTransferLeadershipRequest) => handlers.transferLeadership(request)),
  };
}

/** host:port with a port from 1 to 65535; the host a name, an IPv4 address or a bracketed IPv6 address. */
const MEMBER_ADDRESS_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})$/;

/** Checks a ShardChangeMembershipRequest's fields (INVALID_ARGUMENT naming the field) and converts it. */
export function membershipChangeOf(request: {
  kind: MembershipChangeKind;
  memberId: string;
  address: string;
}): MembershipChange {
  const invalid = (message: string): never => {
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, message);
  };
  if (!ID_PATTERN.test(request.memberId)) {
    invalid(`member_id: must be ${ID_DOC} (got ${JSON.stringify(request.memberId)})`);
  }
  switch (request.kind) {
    case MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER:
      if (!MEMBER_ADDRESS_PATTERN.test(request.address)) {
        invalid(`address: ADD_LEARNER needs the new member's host:port, e.g. 127.0.0.1:7110 (got ${JSON.stringify(request.address)})`);
      }
      return { kind: 'add_learner', memberId: request.memberId, address: request.address };
    case MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE:
    case MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE:
      if (request.address !== '') invalid(`address: only ADD_LEARNER takes an address (got ${JSON.stringify(request.address)})`);
      return { kind: request.kind === MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE ? 'promote' : 'remove', memberId: request.memberId };
    default:
      return invalid(`kind: must be ADD_LEARNER, PROMOTE or REMOVE (got ${String(request.kind)})`);
  }
}

function adviceFor(change: MembershipChange): string {
  switch (change.kind) {
    case 'add_learner':
      return 'wait for a pending change to apply and retry, or check that the member is not already in the group';
    case 'promote':
      return "a learner is promoted once it has caught up with the leader's log and no other change is pending: wait and retry";
    case 'remove':
      return 'wait for a pending change to apply and retry, or check the member id against the group status';
  }
}

function versionMismatch(key: string, current: number, expected: number | undefined): ServiceError {
  return new ServiceError(
    grpcStatus.ABORTED,
    `expected_version: key ${quoteKey(key)} has version ${current}, not ${String(expected)}`,
    { [METADATA.currentVersion]: String(current) },
  );
}

/** Longest key prefix quoted in a message: gRPC carries messages in a header of limited size. */
const QUOTED_KEY_MAX_CHARS = 128;

/** The key as JSON, cut short (at a code point boundary) when long. */
export function quoteKey(key: string): string {
  if (key.length <= QUOTED_KEY_MAX_CHARS) return JSON.stringify(key);
  let cut = QUOTED_KEY_MAX_CHARS;
  const last = key.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--;
  return `${JSON.stringify(key.slice(0, cut))}… (${Buffer.byteLength(key, 'utf8')} bytes)`;
}
