// A fake coordinator for the SDK's tests: a grpc-js server speaking the real KV and Cluster
// contracts, with scripted failures, held calls and call counters. Its KV keeps data in a Map; its
// Cluster answers with a fixed ring, like a meta group that has one.
import * as grpc from '@grpc/grpc-js';
import { ClusterService, type ClusterServer, type GetRingResponse } from '@concord/proto/cluster';
import { KVService, type KVServer } from '@concord/proto/kv';
import type { ScriptedFailure } from './fake-cluster.js';

export type CoordinatorMethod = 'get' | 'put' | 'delete' | 'getRing' | 'status';

/** What a coordinator without a meta leader answers (the coordinators' own wording and reason). */
export const NO_META_LEADER: ScriptedFailure = {
  code: grpc.status.UNAVAILABLE,
  details: 'no meta leader elected yet; retry',
  metadata: { 'concord-reason': 'NOT_LEADER' },
};

function statusObject(failure: ScriptedFailure): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(failure.metadata ?? {})) metadata.set(key, value);
  return { code: failure.code, details: failure.details, metadata };
}

export class FakeCoordinator {
  readonly calls: Record<CoordinatorMethod, number> = { get: 0, put: 0, delete: 0, getRing: 0, status: 0 };
  /** Failures answered before anything else, one per call, in order, per method. */
  readonly scripted: Partial<Record<CoordinatorMethod, ScriptedFailure[]>> = {};
  /** Methods whose calls are received and never answered. */
  readonly held = new Set<CoordinatorMethod>();
  readonly data = new Map<string, { value: Buffer; version: number }>();
  address = '';
  private version = 0;
  private server: grpc.Server | undefined;
  private heldCallWaiters: (() => void)[] = [];

  constructor(private readonly ring: GetRingResponse) {}

  static async start(ring: GetRingResponse): Promise<FakeCoordinator> {
    const coordinator = new FakeCoordinator(ring);
    const server = new grpc.Server();
    server.addService(KVService, coordinator.kv());
    server.addService(ClusterService, coordinator.cluster());
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
    });
    coordinator.address = `127.0.0.1:${port}`;
    coordinator.server = server;
    return coordinator;
  }

  script(method: CoordinatorMethod, ...failures: ScriptedFailure[]): void {
    (this.scripted[method] ??= []).push(...failures);
  }

  /** Resolves when the next call of a held method arrives. */
  nextHeldCall(): Promise<void> {
    return new Promise((resolve) => this.heldCallWaiters.push(resolve));
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  /** Counts the call; undefined to serve it, 'hold' to never answer, or the failure to answer. */
  private intercept(method: CoordinatorMethod): ScriptedFailure | 'hold' | undefined {
    this.calls[method]++;
    if (this.held.has(method)) {
      for (const resolve of this.heldCallWaiters.splice(0)) resolve();
      return 'hold';
    }
    return this.scripted[method]?.shift();
  }

  private kv(): KVServer {
    return {
      get: (call, callback) => {
        const refusal = this.intercept('get');
        if (refusal === 'hold') return;
        if (refusal !== undefined) return callback(statusObject(refusal));
        const stored = this.data.get(call.request.key);
        callback(null, { found: stored !== undefined, value: stored?.value ?? Buffer.alloc(0), version: stored?.version ?? 0 });
      },
      put: (call, callback) => {
        const refusal = this.intercept('put');
        if (refusal === 'hold') return;
        if (refusal !== undefined) return callback(statusObject(refusal));
        const version = ++this.version;
        this.data.set(call.request.key, { value: call.request.value, version });
        callback(null, { version });
      },
      delete: (call, callback) => {
        const refusal = this.intercept('delete');
        if (refusal === 'hold') return;
        if (refusal !== undefined) return callback(statusObject(refusal));
        const stored = this.data.get(call.request.key);
        this.data.delete(call.request.key);
        callback(null, { deleted: stored !== undefined, previousVersion: stored?.version ?? 0 });
      },
      scan: (call) => {
        call.end();
      },
    };
  }

  private cluster(): ClusterServer {
    return {
      changeShardMembership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake coordinator does not change membership' });
      },
      transferLeadership: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake coordinator does not move leadership' });
      },
      getRing: (_call, callback) => {
        const refusal = this.intercept('getRing');
        if (refusal === 'hold') return;
        if (refusal !== undefined) return callback(statusObject(refusal));
        callback(null, this.ring);
      },
      status: (_call, callback) => {
        const refusal = this.intercept('status');
        if (refusal === 'hold') return;
        if (refusal !== undefined) return callback(statusObject(refusal));
        callback(null, { ringEpoch: this.ring.epoch, meta: undefined, groups: [] });
      },
    };
  }
}
