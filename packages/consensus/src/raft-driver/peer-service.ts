// The server side of concord.v1.Consensus: one per process, shared by every consensus group the
// process hosts. Incoming messages are dispatched by group id to the registered group's transport,
// which hands them to the group's event loop; snapshot chunks are assembled here first, so a group
// only ever sees whole snapshots. Probe answers what this process knows of a group, for a member
// about to bootstrap an empty data dir (bootstrap-guard.ts).

import { Metadata, status, type sendUnaryData, type ServerReadableStream } from '@grpc/grpc-js';
import {
  ConsensusService,
  type ConsensusServer,
  type InstallSnapshotRequest,
  type InstallSnapshotResponse,
  ProbeGroupState,
  type ProbeRequest,
  ProbeResponse,
  type SendRequest,
  type SendResponse,
} from '@concord/proto/consensus';
import { ServiceError, createLogger, ignoreGrpcMethods, toStatusObject, type Logger, type ServiceBinding } from '@concord/runtime';
import type { NodeId, SnapshotMeta } from '../raft/types.js';
import { messageFromWire } from './message-codec.js';
import { decodeSnapshotPayload } from './storage-codec.js';
import type { RaftInbound } from './transport.js';

export const CONSENSUS_SERVICE_NAME = 'concord.v1.Consensus';

/** Metadata of a Send stream: the host:port the sending member's peer service listens on. */
export const SENDER_ADDRESS_METADATA = 'concord-sender-address';

/** Largest snapshot a follower accepts (default); larger ones fail with RESOURCE_EXHAUSTED. */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024;

// The peer stream carries heartbeats several times a second: a span per stream would be noise. So
// would the bootstrap guard's probes, repeated every quarter second while a member starts.
ignoreGrpcMethods(ConsensusService.send.path, ConsensusService.probe.path);

export interface ConsensusPeerServiceOptions {
  logger?: Logger;
  /** See DEFAULT_MAX_SNAPSHOT_BYTES. */
  maxSnapshotBytes?: number;
}

interface Registration {
  memberId: NodeId;
  inbound: RaftInbound;
}

/**
 * What Probe says about one group, and who it hears from: attached by the process's startup code
 * (BootstrapGuard) before the group starts, so a peer asking while this member recovers gets an
 * answer too.
 */
export interface ProbeSubject {
  /** The answer for `askingMember`. */
  answer(askingMember: NodeId): ProbeResponse;
  /** A consensus message or snapshot of the group from `from` reached this member. Must not block. */
  heard(from: NodeId): void;
}

/** Answers a client-streaming call exactly once. */
function once<Res>(callback: sendUnaryData<Res>): sendUnaryData<Res> {
  let answered = false;
  return (error, value) => {
    if (answered) return;
    answered = true;
    callback(error, value);
  };
}

export class ConsensusPeerService {
  private readonly groups = new Map<string, Registration>();
  private readonly probeSubjects = new Map<string, ProbeSubject>();
  /** Open Send streams, answered (closed) by close(). */
  private readonly openStreams = new Set<() => void>();
  private readonly logger: Logger;
  private readonly maxSnapshotBytes: number;
  private closed = false;

  constructor(options: ConsensusPeerServiceOptions = {}) {
    this.logger = options.logger ?? createLogger({ service: 'consensus' });
    this.maxSnapshotBytes = options.maxSnapshotBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
    if (!Number.isSafeInteger(this.maxSnapshotBytes) || this.maxSnapshotBytes < 1) {
      throw new RangeError(`maxSnapshotBytes: must be a positive integer (got ${String(options.maxSnapshotBytes)})`);
    }
  }

  /** Routes messages for `groupId` addressed to `memberId` to `inbound`; returns the unregister function. */
  register(groupId: string, memberId: NodeId, inbound: RaftInbound): () => void {
    if (this.groups.has(groupId)) throw new Error(`consensus group ${groupId} is already registered with this peer service`);
    const registration: Registration = { memberId, inbound };
    this.groups.set(groupId, registration);
    return () => {
      if (this.groups.get(groupId) === registration) this.groups.delete(groupId);
    };
  }

  /** Makes Probe answer for `groupId` from `subject`; returns the detach function. */
  attachProbeSubject(groupId: string, subject: ProbeSubject): () => void {
    if (this.probeSubjects.has(groupId)) throw new Error(`consensus group ${groupId} already has a probe subject on this peer service`);
    this.probeSubjects.set(groupId, subject);
    return () => {
      if (this.probeSubjects.get(groupId) === subject) this.probeSubjects.delete(groupId);
    };
  }

  /** What ConcordServer.start takes to serve this service. */
  binding(): ServiceBinding {
    const implementation: ConsensusServer = {
      send: (call, callback) => this.handleSend(call, callback),
      installSnapshot: (call, callback) => this.handleInstallSnapshot(call, callback),
      probe: (call, callback) => callback(null, this.probe(call.request)),
    };
    return { name: CONSENSUS_SERVICE_NAME, definition: ConsensusService, implementation };
  }

  /**
   * Answers every open Send stream and refuses new calls. Call before the server's shutdown: the
   * peers' streams never end on their own, so a graceful shutdown would otherwise wait them out.
   */
  close(): void {
    this.closed = true;
    for (const answer of [...this.openStreams]) answer();
  }

  private handleSend(call: ServerReadableStream<SendRequest, SendResponse>, callback: sendUnaryData<SendResponse>): void {
    const answer = once(callback);
    if (this.closed) {
      answer(toStatusObject(new ServiceError(status.UNAVAILABLE, 'this member is shutting down')));
      return;
    }
    const finish = (): void => {
      this.openStreams.delete(finish);
      answer(null, {});
    };
    this.openStreams.add(finish);
    // Response headers now, not with the answer when the stream ends (hours later): until a call
    // has its headers, grpc-js's client keeps every message written on it for a possible retry
    // (up to 256 KiB of them, thousands of acknowledgements, each holding on to the 64 KiB buffer
    // pool slab it was cut from); with them, each message is let go once written.
    call.sendMetadata(new Metadata());
    const announced = call.metadata.get(SENDER_ADDRESS_METADATA)[0];
    const senderAddress = typeof announced === 'string' && announced !== '' ? announced : undefined;
    call.on('data', (request: SendRequest) => this.dispatch(request, senderAddress));
    call.on('end', finish);
    // The client went away: nothing to answer, just forget the stream.
    call.on('error', () => this.openStreams.delete(finish));
    call.on('cancelled', () => this.openStreams.delete(finish));
  }

  private dispatch(request: SendRequest, senderAddress: string | undefined): void {
    const registration = this.groups.get(request.groupId);
    // A group not started yet (or stopped): Raft retransmits, so dropping is the right answer.
    if (registration === undefined || request.raft === undefined) return;
    let message;
    try {
      message = messageFromWire(request.raft);
    } catch (error) {
      this.logger.warn({ err: error, group_id: request.groupId }, 'dropping an undecodable consensus message');
      return;
    }
    if (message.to !== registration.memberId) {
      // Another member's message (an address now used by someone else): feeding it to this
      // member's core would be wrong.
      this.logger.debug({ group_id: request.groupId, to: message.to, member_id: registration.memberId }, 'dropping a message for another member');
      return;
    }
    this.probeSubjects.get(request.groupId)?.heard(message.from);
    registration.inbound.receive(message, senderAddress);
  }

  private probe(request: ProbeRequest): ProbeResponse {
    const subject = this.probeSubjects.get(request.groupId);
    if (subject !== undefined) return subject.answer(request.memberId);
    return ProbeResponse.fromPartial({
      state: ProbeGroupState.PROBE_GROUP_STATE_ABSENT,
      memberId: this.groups.get(request.groupId)?.memberId ?? '',
    });
  }

  private handleInstallSnapshot(
    call: ServerReadableStream<InstallSnapshotRequest, InstallSnapshotResponse>,
    callback: sendUnaryData<InstallSnapshotResponse>,
  ): void {
    const answer = once(callback);
    let header: InstallSnapshotRequest | undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    let failed = false;
    const fail = (code: status, message: string): void => {
      failed = true;
      answer(toStatusObject(new ServiceError(code, message)));
    };
    if (this.closed) {
      fail(status.UNAVAILABLE, 'this member is shutting down');
      return;
    }

    call.on('data', (chunk: InstallSnapshotRequest) => {
      if (failed) return;
      if (done) return fail(status.INVALID_ARGUMENT, 'snapshot chunk after the one marked done');
      if (header === undefined) {
        if (chunk.groupId === '' || chunk.from === '' || chunk.to === '') {
          return fail(status.INVALID_ARGUMENT, 'the first snapshot chunk must carry group_id, from and to');
        }
        header = chunk;
      } else if (chunk.groupId !== header.groupId || chunk.index !== header.index || chunk.snapshotTerm !== header.snapshotTerm) {
        return fail(status.INVALID_ARGUMENT, 'every snapshot chunk must name the same group, index and term as the first');
      }
      if (chunk.offset !== received) {
        return fail(status.INVALID_ARGUMENT, `snapshot chunk at offset ${chunk.offset}, expected ${received}`);
      }
      received += chunk.data.length;
      if (received > this.maxSnapshotBytes) {
        return fail(status.RESOURCE_EXHAUSTED, `snapshot larger than the ${this.maxSnapshotBytes}-byte limit (maxSnapshotBytes)`);
      }
      chunks.push(chunk.data);
      done = chunk.done;
    });
    call.on('end', () => {
      if (failed) return;
      if (header === undefined || !done) return fail(status.INVALID_ARGUMENT, 'snapshot stream ended before the chunk marked done');
      this.deliverSnapshot(header, Buffer.concat(chunks, received)).then(
        (response) => answer(null, response),
        (error: unknown) => answer(toStatusObject(error)),
      );
    });
    call.on('error', () => {
      failed = true;
    });
  }

  private async deliverSnapshot(header: InstallSnapshotRequest, data: Buffer): Promise<InstallSnapshotResponse> {
    const registration = this.groups.get(header.groupId);
    if (registration === undefined) throw new ServiceError(status.UNAVAILABLE, `consensus group ${header.groupId} is not running on this member`);
    if (header.to !== registration.memberId) {
      throw new ServiceError(status.FAILED_PRECONDITION, `snapshot for member ${header.to}, but this is member ${registration.memberId}`);
    }
    const meta: SnapshotMeta = {
      index: header.index,
      term: header.snapshotTerm,
      membership: { voters: [...header.voters], learners: [...header.learners] },
    };
    let stored;
    try {
      stored = decodeSnapshotPayload(data);
    } catch (error) {
      throw new ServiceError(status.INVALID_ARGUMENT, `snapshot payload: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (stored.meta.index !== meta.index || stored.meta.term !== meta.term || !sameMembers(stored.meta.membership, meta.membership)) {
      throw new ServiceError(status.INVALID_ARGUMENT, 'snapshot payload does not match the index, term and membership of its first chunk');
    }
    this.probeSubjects.get(header.groupId)?.heard(header.from);
    return registration.inbound.receiveSnapshot({ from: header.from, to: header.to, term: header.term, meta, data });
  }
}

function sameMembers(a: SnapshotMeta['membership'], b: SnapshotMeta['membership']): boolean {
  const key = (m: SnapshotMeta['membership']): string => JSON.stringify([[...m.voters].sort(), [...m.learners].sort()]);
  return key(a) === key(b);
}
