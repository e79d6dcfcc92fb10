// In-process fake shard replicas and a fake Cluster service for the SDK's tests: plain grpc-js
// servers speaking the real contracts, with scripted failures and call counters. They keep data in
// a Map and enforce ring ownership like a shard, but have no consensus behind them.
import * as grpc from '@grpc/grpc-js';
import { ClusterService, MemberRole, type ClusterServer, type GetRingResponse } from '@concord/proto/cluster';
import type { KeyValue } from '@concord/proto/common';
import { ShardService, type ShardServer, type ShardScanRequest } from '@concord/proto/shard';
import { HashRing, RING_HASH } from '@concord/ring';

export type ShardMethod = 'get' | 'put' | 'delete' | 'scan' | 'status';

/** An error a replica answers with instead of serving a call. */
export interface ScriptedFailure {
  code: grpc.status;
  details: string;
  metadata?: Record<string, string>;
}

interface StoredValue {
  value: Buffer;
  version: number;
}

function statusObject(failure: ScriptedFailure): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(failure.metadata ?? {})) metadata.set(key, value);
  return { code: failure.code, details: failure.details, metadata };
}

function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function listen(server: grpc.Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  return `127.0.0.1:${port}`;
}

/** One fake replica. It serves calls as leader unless `leader` is false. */
export class FakeReplica {
  readonly calls: Record<ShardMethod, number> = { get: 0, put: 0, delete: 0, scan: 0, status: 0 };
  /** Failures answered before anything else, one per call, in order, per method. */
  readonly scripted: Partial<Record<ShardMethod, ScriptedFailure[]>> = {};
  /** Answered to every call of a method while set (after `scripted`). */
  readonly always: Partial<Record<ShardMethod, ScriptedFailure>> = {};
  leader = true;
  /** What a follower names as leader in concord-leader; '' when it does not know. */
  leaderHint = '';
  /** Methods whose calls are received and never answered, like a server that dies mid-call. */
  readonly held = new Set<ShardMethod>();
  address = '';
  private server: grpc.Server | undefined;
  private heldCallWaiters: (() => void)[] = [];

  constructor(
    readonly group: FakeShardGroup,
    readonly memberId: string,
  ) {}

  script(method: ShardMethod, ...failures: ScriptedFailure[]): void {
    (this.scripted[method] ??= []).push(...failures);
  }

  /** Resolves when the next call of a held method arrives. */
  nextHeldCall(): Promise<void> {
    return new Promise((resolve) => this.heldCallWaiters.push(resolve));
  }

  /** Whether this call is held (counted, never answered). */
  private holds(method: ShardMethod): boolean {
    if (!this.held.has(method)) return false;
    this.calls[method]++;
    for (const resolve of this.heldCallWaiters.splice(0)) resolve();
    return true;
  }

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(ShardService, this.implementation());
    this.address = await listen(server);
    this.server = server;
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  /** The failure this call must get, if any: scripted, then always-on, then follower, then ownership. */
  private refusal(method: ShardMethod, ringEpoch: number, key: string | undefined): ScriptedFailure | undefined {
    this.calls[method]++;
    const scripted = this.scripted[method]?.shift();
    if (scripted !== undefined) return scripted;
    const always = this.always[method];
    if (always !== undefined) return always;
    if (method === 'status') return undefined;
    if (!this.leader) {
      const metadata: Record<string, string> = { 'concord-reason': 'NOT_LEADER' };
      if (this.leaderHint !== '') metadata['concord-leader'] = this.leaderHint;
      return { code: grpc.status.UNAVAILABLE, details: `${this.memberId} is not the leader of ${this.group.groupId}`, metadata };
    }
    const ring = this.group.cluster.ring;
    const wrongEpoch = ringEpoch !== 0 && ringEpoch !== ring.epoch;
    if (wrongEpoch || (key !== undefined && ring.ownerOf(key) !== this.group.groupId)) {
      return {
        code: grpc.status.FAILED_PRECONDITION,
        details: `group ${this.group.groupId} does not own this key at ring epoch ${ring.epoch}`,
        metadata: { 'concord-reason': 'WRONG_SHARD', 'concord-ring-epoch': String(ring.epoch) },
      };
    }
    return undefined;
  }

  private implementation(): ShardServer {
    const data = this.group.data;
    return {
      get: (call, callback) => {
        if (this.holds('get')) return;
        const refusal = this.refusal('get', call.request.ringEpoch, call.request.key);
        if (refusal !== undefined) return callback(statusObject(refusal));
        const stored = data.get(call.request.key);
        callback(null, { found: stored !== undefined, value: stored?.value ?? Buffer.alloc(0), version: stored?.version ?? 0 });
      },
      put: (call, callback) => {
        if (this.holds('put')) return;
        const { ringEpoch, key, value, expectedVersion } = call.request;
        const refusal = this.refusal('put', ringEpoch, key) ?? this.casRefusal(key, expectedVersion);
        if (refusal !== undefined) return callback(statusObject(refusal));
        const version = this.group.nextVersion();
        data.set(key, { value, version });
        callback(null, { version });
      },
      delete: (call, callback) => {
        const { ringEpoch, key, expectedVersion } = call.request;
        const refusal = this.refusal('delete', ringEpoch, key) ?? this.casRefusal(key, expectedVersion);
        if (refusal !== undefined) return callback(statusObject(refusal));
        const stored = data.get(key);
        data.delete(key);
        this.group.nextVersion();
        callback(null, { deleted: stored !== undefined, previousVersion: stored?.version ?? 0 });
      },
      scan: (call) => {
        const refusal = this.refusal('scan', call.request.ringEpoch, undefined);
        if (refusal !== undefined) {
          call.emit('error', Object.assign(new Error(refusal.details), statusObject(refusal)));
          return;
        }
        const kvs = this.group.select(call.request);
        // Small batches, so the client's flattening of batches is exercised.
        for (let i = 0; i < kvs.length; i += this.group.scanBatchSize) {
          call.write({ kvs: kvs.slice(i, i + this.group.scanBatchSize) });
        }
        call.end();
      },
      status: (call, callback) => {
        const refusal = this.refusal('status', 0, undefined);
        if (refusal !== undefined) return callback(statusObject(refusal));
        const leader = this.group.replicas.find((replica) => replica.leader);
        callback(null, {
          groupId: this.group.groupId,
          memberId: this.memberId,
          role: this.leader ? 'LEADER' : 'FOLLOWER',
          term: 1,
          commitIndex: this.group.lastVersion,
          appliedIndex: this.group.lastVersion,
          keyCount: data.size,
          ringEpoch: this.group.cluster.ring.epoch,
          engine: 'fake',
          leaderAddress: leader?.address ?? '',
        });
      },
      changeMembership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake cluster does not change membership' });
      },
      transferLeadership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake cluster does not move leadership' });
      },
    };
  }

  private casRefusal(key: string, expectedVersion: number | undefined): ScriptedFailure | undefined {
    if (expectedVersion === undefined) return undefined;
    const current = this.group.data.get(key)?.version ?? 0;
    if (current === expectedVersion) return undefined;
    return {
      code: grpc.status.ABORTED,
      details: `key ${key}: expected version ${expectedVersion} but found ${current}`,
      metadata: { 'concord-current-version': String(current) },
    };
  }
}

/** One fake shard group: replicas sharing one Map (there is no replication to fake). */
export class FakeShardGroup {
  readonly replicas: FakeReplica[] = [];
  readonly data = new Map<string, StoredValue>();
  lastVersion = 0;
  scanBatchSize = 2;

  constructor(
    readonly cluster: FakeCluster,
    readonly groupId: string,
    replicaCount: number,
  ) {
    for (let i = 0; i < replicaCount; i++) this.replicas.push(new FakeReplica(this, `${groupId}-${i}`));
  }

  nextVersion(): number {
    return ++this.lastVersion;
  }

  get leader(): FakeReplica | undefined {
    return this.replicas.find((replica) => replica.leader);
  }

  select(request: ShardScanRequest): KeyValue[] {
    const keys = [...this.data.keys()]
      .filter((key) => {
        if (request.prefix !== '') return key.startsWith(request.prefix);
        if (request.startKey !== '' && compareKeys(key, request.startKey) < 0) return false;
        return request.endKey === '' || compareKeys(key, request.endKey) < 0;
      })
      .sort(compareKeys)
      .slice(0, request.limit === 0 ? 1000 : request.limit);
    return keys.map((key) => {
      const stored = this.data.get(key) as StoredValue;
      return { key, value: stored.value, version: stored.version };
    });
  }

  totalCalls(method: ShardMethod): number {
    return this.replicas.reduce((sum, replica) => sum + replica.calls[method], 0);
  }
}

export interface FakeClusterOptions {
  groups: readonly string[];
  replicasPerGroup?: number;
  epoch?: number;
  vnodesPerGroup?: number;
}

/** Fake shard groups plus a fake Cluster service whose GetRing publishes `ringResponse()`. */
export class FakeCluster {
  readonly groups = new Map<string, FakeShardGroup>();
  /** The ring the replicas enforce. */
  ring: HashRing;
  /** What GetRing answers; by default the enforced ring with every replica, leader unknown. */
  published: GetRingResponse | undefined;
  getRingCalls = 0;
  clusterAddress = '';
  private clusterServer: grpc.Server | undefined;

  constructor(options: FakeClusterOptions) {
    this.ring = new HashRing({ epoch: options.epoch ?? 1, vnodesPerGroup: options.vnodesPerGroup ?? 16, groups: options.groups });
    for (const groupId of options.groups) this.groups.set(groupId, new FakeShardGroup(this, groupId, options.replicasPerGroup ?? 1));
  }

  static async start(options: FakeClusterOptions): Promise<FakeCluster> {
    const cluster = new FakeCluster(options);
    for (const group of cluster.groups.values()) for (const replica of group.replicas) await replica.start();
    const server = new grpc.Server();
    server.addService(ClusterService, cluster.clusterImplementation());
    cluster.clusterAddress = await listen(server);
    cluster.clusterServer = server;
    return cluster;
  }

  group(groupId: string): FakeShardGroup {
    const group = this.groups.get(groupId);
    if (group === undefined) throw new Error(`no fake group ${groupId}`);
    return group;
  }

  /** The routing table matching the enforced ring. */
  ringResponse(): GetRingResponse {
    return {
      epoch: this.ring.epoch,
      vnodesPerGroup: this.ring.vnodesPerGroup,
      hash: RING_HASH,
      groups: this.ring.groups.map((groupId) => ({
        groupId,
        addresses: this.group(groupId).replicas.map((replica) => replica.address),
        leaderAddress: '',
      })),
    };
  }

  /** A ring source for a ShardRouter that counts its calls like GetRing does. */
  readonly ringSource = async (): Promise<GetRingResponse> => {
    this.getRingCalls++;
    return this.published ?? this.ringResponse();
  };

  /** Every stored key, in key order, with the group holding it. */
  allKeys(): { key: string; groupId: string }[] {
    const all = [...this.groups.values()].flatMap((group) => [...group.data.keys()].map((key) => ({ key, groupId: group.groupId })));
    return all.sort((a, b) => compareKeys(a.key, b.key));
  }

  stop(): void {
    for (const group of this.groups.values()) for (const replica of group.replicas) replica.stop();
    this.clusterServer?.forceShutdown();
  }

  private clusterImplementation(): ClusterServer {
    return {
      changeShardMembership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake cluster does not change membership' });
      },
      transferLeadership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake cluster does not move leadership' });
      },
      getRing: (_call, callback) => {
        this.ringSource().then((ring) => callback(null, ring), (error: Error) => callback(error));
      },
      status: (_call, callback) => {
        callback(null, {
          ringEpoch: this.ring.epoch,
          meta: undefined,
          groups: [...this.groups.values()].map((group) => ({
            groupId: group.groupId,
            members: group.replicas.map((replica) => ({
              memberId: replica.memberId,
              address: replica.address,
              role: replica.leader ? MemberRole.MEMBER_ROLE_LEADER : MemberRole.MEMBER_ROLE_FOLLOWER,
              term: 1,
              commitIndex: group.lastVersion,
              appliedIndex: group.lastVersion,
              engine: 'fake',
              error: '',
            })),
            leaderId: group.leader?.memberId ?? '',
            keyCount: group.data.size,
            ringShare: this.ring.shares().get(group.groupId) ?? 0,
          })),
        });
      },
    };
  }
}
