// Helpers for this package's tests: shard nodes and coordinators in this process, on 127.0.0.1,
// with data in temporary folders, driven through the generated clients as real callers drive them.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type Metadata, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { ClusterClient, type GetRingResponse, type StatusResponse } from '@concord/proto/cluster';
import { ReadConsistency } from '@concord/proto/common';
import { KVClient, type GetResponse, type PutResponse, type ScanResponse } from '@concord/proto/kv';
import { CLIENT_CHANNEL_OPTIONS, createLogger, type Logger } from '@concord/runtime';
import { compileShardOptions, startShardNode, type ShardNode } from '@concord/shard';
import { startCoordinator, type CoordinatorNode } from './coordinator-node.js';
import { compileCoordinatorOptions } from './options.js';

export const testLogger: Logger = createLogger({ service: 'coordinator-test', level: process.env['COORDINATOR_TEST_LOG'] ?? 'silent' });

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** A logger whose JSON lines at `level` and above are kept in `lines`, to check what was logged. */
export function capturingLogger(level: 'info' | 'warn'): { logger: Logger; lines: () => LogLine[] } {
  const captured: string[] = [];
  const logger = createLogger({ service: 'coordinator-test', level, destination: { write: (line: string) => void captured.push(line) } });
  return { logger, lines: () => captured.flatMap((chunk) => chunk.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as LogLine)) };
}

type Callback<Res> = (error: GrpcError | null, response: Res) => void;

/** Runs one unary call of a generated client; rejects with the grpc-js error. */
export function call<Res>(invoke: (callback: Callback<Res>) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((error, response) => (error === null ? resolve(response) : reject(error)));
  });
}

/** Asserts a grpc-js error's code and message, and returns it for further checks. */
export async function failsWith(work: Promise<unknown>, code: status, details: RegExp): Promise<GrpcError> {
  let caught: GrpcError | undefined;
  await assert.rejects(work, (error: GrpcError) => {
    assert.equal(error.code, code, `expected ${status[code]}, got ${status[error.code]}: ${error.details}`);
    assert.match(error.details, details);
    caught = error;
    return true;
  });
  return caught as GrpcError;
}

/** The messages of a server stream; rejects with the grpc-js error. */
export async function messages<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const message of stream) all.push(message);
  return all;
}

/** Polls `condition` every 20 ms until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, condition: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
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
 * `count` distinct free TCP ports on 127.0.0.1. A meta member must know every peer's address
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

/** One single-engine shard replica per group, on port 0, routing with the ring of `groups` at `ringEpoch`. */
export async function startTestShards(root: string, groups: readonly string[], ringEpoch = 1): Promise<ShardNode[]> {
  const shards: ShardNode[] = [];
  for (const groupId of groups) {
    const options = compileShardOptions({
      argv: [
        '--engine', 'single',
        '--group-id', groupId,
        '--listen', '127.0.0.1:0',
        '--data-dir', join(root, `shard-${groupId}`),
        '--ring-groups', groups.join(','),
        '--ring-epoch', String(ringEpoch),
        '--sync=false',
        '--log-level', 'silent',
      ],
      env: {},
    });
    shards.push(await startShardNode(options, testLogger));
  }
  return shards;
}

/** Promise wrappers over one coordinator's KV and Cluster services. */
export class CoordinatorClient {
  readonly kv: KVClient;
  readonly cluster: ClusterClient;

  constructor(readonly address: string) {
    this.kv = new KVClient(address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
    this.cluster = new ClusterClient(address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  }

  put(key: string, value: string, expectedVersion?: number): Promise<PutResponse> {
    return call((callback: Callback<PutResponse>) => this.kv.put({ key, value: Buffer.from(value), expectedVersion }, callback));
  }

  get(key: string): Promise<GetResponse> {
    return call((callback: Callback<GetResponse>) => this.kv.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, callback));
  }

  async scanKeys(prefix: string, limit = 0): Promise<string[]> {
    const batches = await messages<ScanResponse>(
      this.kv.scan({ prefix, startKey: '', endKey: '', limit, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }),
    );
    return batches.flatMap((batch) => batch.kvs.map((kv) => kv.key));
  }

  ring(): Promise<GetRingResponse> {
    return call((callback: Callback<GetRingResponse>) => this.cluster.getRing({}, callback));
  }

  status(metadata?: Metadata): Promise<StatusResponse> {
    return call((callback: Callback<StatusResponse>) =>
      metadata === undefined ? this.cluster.status({}, callback) : this.cluster.status({}, metadata, callback),
    );
  }

  close(): void {
    this.kv.close();
    this.cluster.close();
  }
}

export interface MetaTestClusterOptions {
  /** Member ids, in --peers order. */
  ids: readonly string[];
  /** --groups of every member. */
  groups: string;
  /** Further flags of every member, e.g. ['--ring-epoch', '3']. */
  flags?: readonly string[];
}

interface MetaTestMember {
  id: string;
  address: string;
  dataDir: string;
  node: CoordinatorNode | undefined;
}

/** A meta group of raft coordinators in this process, each with its own port and data folder. */
export class MetaTestCluster {
  private readonly members = new Map<string, MetaTestMember>();

  private constructor(
    private readonly root: string,
    private readonly peersFlag: string,
    private readonly options: MetaTestClusterOptions,
  ) {}

  static async start(options: MetaTestClusterOptions): Promise<MetaTestCluster> {
    const root = await mkdtemp(join(tmpdir(), 'concord-meta-test-'));
    const ports = await freePorts(options.ids.length);
    const peersFlag = options.ids.map((id, i) => `${id}=127.0.0.1:${ports[i]!}`).join(',');
    const cluster = new MetaTestCluster(root, peersFlag, options);
    options.ids.forEach((id, i) => cluster.members.set(id, { id, address: `127.0.0.1:${ports[i]!}`, dataDir: join(root, id), node: undefined }));
    try {
      // Concurrently: a member's start resolves once it recovered, not once a leader exists.
      await Promise.all(options.ids.map((id) => cluster.startMember(id)));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** Starts (or restarts, from its data folder) one member; `flags` replace the cluster's --groups and extra flags. */
  async startMember(id: string, flags?: readonly string[], logger: Logger = testLogger.child({ member_id: id })): Promise<CoordinatorNode> {
    const member = this.member(id);
    if (member.node !== undefined) throw new Error(`${id} is running`);
    const argv = [
      '--member-id', id,
      '--listen', member.address,
      '--peers', this.peersFlag,
      '--data-dir', member.dataDir,
      '--tick-ms', '20',
      '--sync=false',
      '--log-level', 'silent',
      ...(flags ?? ['--groups', this.options.groups, ...(this.options.flags ?? [])]),
    ];
    member.node = await startCoordinator(compileCoordinatorOptions({ argv, env: {} }), logger);
    return member.node;
  }

  async stopMember(id: string): Promise<void> {
    const member = this.member(id);
    const node = member.node;
    member.node = undefined;
    await node?.stop();
  }

  address(id: string): string {
    return this.member(id).address;
  }

  running(): CoordinatorNode[] {
    return [...this.members.values()].flatMap((member) => (member.node === undefined ? [] : [member.node]));
  }

  /** The running member that leads, once exactly one does and every running member follows it. */
  leader(timeoutMs = 15_000): Promise<CoordinatorNode> {
    return eventually(
      'a meta leader followed by every running coordinator',
      () => {
        const running = this.running();
        const leaders = running.filter((node) => node.metaStatus()?.role === 'leader');
        const leader = leaders.length === 1 ? leaders[0] : undefined;
        if (leader === undefined) return undefined;
        return running.every((node) => node.metaStatus()?.leaderId === leader.memberId) ? leader : undefined;
      },
      timeoutMs,
    );
  }

  /** The running members other than `leader`. */
  followers(leader: CoordinatorNode): CoordinatorNode[] {
    return this.running().filter((node) => node !== leader);
  }

  async close(): Promise<void> {
    for (const member of this.members.values()) await this.stopMember(member.id);
    await rm(this.root, { recursive: true, force: true });
  }

  private member(id: string): MetaTestMember {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }
}
