// Helpers for this package's tests: shard nodes in this process, driven through the generated
// ShardClient exactly as the coordinator and the SDK call them.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { credentials, type status, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import {
  ShardClient,
  ShardDeleteRequest,
  ShardGetRequest,
  ShardPutRequest,
  ShardScanRequest,
  type ShardDeleteResponse,
  type ShardGetResponse,
  type ShardPutResponse,
  type ShardScanResponse,
  type ShardStatusResponse,
} from '@concord/proto/shard';
import { HashRing } from '@concord/ring';
import { CLIENT_CHANNEL_OPTIONS } from '@concord/runtime';
import type { ShardOptions } from './options.js';

/** The ring every test node routes with. */
export const TEST_RING = new HashRing({ epoch: 1, vnodesPerGroup: 128, groups: ['g1', 'g2'] });

/** Settings of a test node of group g1; raft settings are there but unused by the single engine. */
export function testShardOptions(fields: Pick<ShardOptions, 'dataDir' | 'engine'> & Partial<ShardOptions>): ShardOptions {
  const memberId = fields.memberId ?? 'g1-0';
  return {
    join: false,
    bootstrapCheckTimeoutMs: 5_000,
    forceBootstrap: false,
    advertisedAddress: fields.peers?.[memberId] ?? '',
    groupId: 'g1',
    memberId: 'g1-0',
    listenHost: '127.0.0.1',
    listenPort: 0,
    ringGroups: ['g1', 'g2'],
    ringVnodes: 128,
    ringEpoch: 1,
    peers: {},
    tickMs: 50,
    electionTicks: 10,
    heartbeatTicks: 1,
    readMode: 'safe',
    sync: false,
    snapshotEvery: 10_000,
    maxUncommittedBytes: 64 * 1024 * 1024,
    snapshotLogRatio: 0.5,
    snapshotRatioMinBytes: 4 * 1024 * 1024,
    logLevel: 'silent',
    ...fields,
  };
}

/** The first `count` keys `<prefix><n>` that `groupId` owns, in numeric order of n. */
export function keysOwnedBy(groupId: string, prefix: string, count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    if (i > 100_000) throw new Error(`too few keys with prefix ${prefix} owned by ${groupId}`);
    const key = `${prefix}${String(i).padStart(5, '0')}`;
    if (TEST_RING.ownerOf(key) === groupId) keys.push(key);
  }
  return keys;
}

export function keyOwnedBy(groupId: string, prefix: string): string {
  return keysOwnedBy(groupId, prefix, 1)[0]!;
}

/** Promise wrappers over the callback client; requests are completed with proto defaults. */
export class Shard {
  readonly client: ShardClient;

  constructor(readonly address: string) {
    this.client = new ShardClient(address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  }

  get(request: Partial<ShardGetRequest>): Promise<ShardGetResponse> {
    return new Promise((resolve, reject) =>
      this.client.get(ShardGetRequest.fromPartial(request), (error, response) => (error ? reject(error) : resolve(response))),
    );
  }
  put(request: Partial<ShardPutRequest>): Promise<ShardPutResponse> {
    return new Promise((resolve, reject) =>
      this.client.put(ShardPutRequest.fromPartial(request), (error, response) => (error ? reject(error) : resolve(response))),
    );
  }
  delete(request: Partial<ShardDeleteRequest>): Promise<ShardDeleteResponse> {
    return new Promise((resolve, reject) =>
      this.client.delete(ShardDeleteRequest.fromPartial(request), (error, response) => (error ? reject(error) : resolve(response))),
    );
  }
  scan(request: Partial<ShardScanRequest>): Promise<ShardScanResponse[]> {
    return new Promise((resolve, reject) => {
      const batches: ShardScanResponse[] = [];
      const stream = this.client.scan(ShardScanRequest.fromPartial(request));
      stream.on('data', (batch: ShardScanResponse) => batches.push(batch));
      stream.on('error', reject);
      stream.on('end', () => resolve(batches));
    });
  }
  status(): Promise<ShardStatusResponse> {
    return new Promise((resolve, reject) => this.client.status({}, (error, response) => (error ? reject(error) : resolve(response))));
  }
  close(): void {
    this.client.close();
  }
}

export async function assertGrpcError(promise: Promise<unknown>, code: status, message: RegExp, metadata: Record<string, string> = {}): Promise<void> {
  await assert.rejects(promise, (error: GrpcServiceError) => {
    assert.equal(error.code, code, `status of "${error.details}"`);
    assert.match(error.details, message);
    for (const [name, value] of Object.entries(metadata)) assert.deepEqual(error.metadata.get(name), [value], `metadata ${name}`);
    return true;
  });
}

export function keysOf(batches: ShardScanResponse[]): string[] {
  return batches.flatMap((batch) => batch.kvs.map((kv) => kv.key));
}

/** Polls `condition` every 20 ms until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, condition: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * `count` distinct free TCP ports on 127.0.0.1. A Raft member must know every peer's address
 * before it starts, so ports are picked up front rather than with port 0.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
