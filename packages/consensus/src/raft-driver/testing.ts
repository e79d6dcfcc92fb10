// Helpers for this folder's tests: a small state machine and a cluster of RaftGroups, each on its
// own gRPC server on 127.0.0.1, with data in a temporary folder.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConcordServer, createLogger, type Logger } from '@concord/runtime';
import type { StateMachine } from '../types.js';
import { GrpcRaftTransport } from './grpc-transport.js';
import { ConsensusPeerService } from './peer-service.js';
import { RaftGroup, type RaftGroupOptions } from './raft-group.js';
import { seededRandom } from './random.js';

/**
 * A key-value map whose commands are "key=value"; apply returns "<index>:<previous value>". It also
 * records every command it applied, in order, so tests can compare histories across replicas.
 */
export class KvMachine implements StateMachine<string> {
  values = new Map<string, string>();
  history: string[] = [];
  restores = 0;

  apply(command: Uint8Array, index: number): string {
    const text = Buffer.from(command).toString('utf8');
    const split = text.indexOf('=');
    const key = split < 0 ? text : text.slice(0, split);
    const previous = this.values.get(key) ?? '';
    this.values.set(key, split < 0 ? '' : text.slice(split + 1));
    this.history.push(text);
    return `${index}:${previous}`;
  }

  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify({ values: [...this.values], history: this.history }));
  }

  restore(snapshot: Uint8Array): void {
    const state = JSON.parse(Buffer.from(snapshot).toString('utf8')) as { values: [string, string][]; history: string[] };
    this.values = new Map(state.values);
    this.history = state.history;
    this.restores++;
  }
}

/** Polls `condition` every 20 ms until it holds or `timeoutMs` passes. */
export async function eventually<T>(what: string, condition: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface TestMember {
  id: string;
  address: string;
  port: number;
  dataDir: string;
  machine: KvMachine;
  group: RaftGroup<string>;
  server: ConcordServer;
  peerService: ConsensusPeerService;
  running: boolean;
}

export type MemberOverrides = Partial<Omit<RaftGroupOptions<string>, 'groupId' | 'memberId' | 'address' | 'dataDir' | 'stateMachine' | 'transport'>>;

/** N members of one group ("g1"), each with its own server, peer service and data folder. */
export class TestCluster {
  readonly members = new Map<string, TestMember>();
  private constructor(
    private readonly root: string,
    private readonly logger: Logger,
    private readonly overrides: MemberOverrides,
    private readonly bootstrapPeers: Record<string, string>,
  ) {}

  static async start(ids: string[], overrides: MemberOverrides = {}): Promise<TestCluster> {
    const root = await mkdtemp(join(tmpdir(), 'concord-raft-group-'));
    const logger = createLogger({ service: 'raft-test', level: process.env['RAFT_TEST_LOG'] ?? 'silent' });
    // Servers first: with port 0 the addresses are known only once they are bound.
    const servers = await Promise.all(ids.map(async (id) => ({ id, ...(await TestCluster.serve(0, logger)) })));
    const peers: Record<string, string> = {};
    for (const { id, server } of servers) peers[id] = server.address;
    const cluster = new TestCluster(root, logger, overrides, peers);
    for (const { id, server, peerService } of servers) {
      await cluster.startMember(id, server, peerService);
    }
    return cluster;
  }

  private static async serve(port: number, logger: Logger): Promise<{ server: ConcordServer; peerService: ConsensusPeerService }> {
    const peerService = new ConsensusPeerService({ logger });
    const server = await ConcordServer.start({ host: '127.0.0.1', port, services: [peerService.binding()], logger, shutdownGraceMs: 1000 });
    return { server, peerService };
  }

  private async startMember(id: string, server: ConcordServer, peerService: ConsensusPeerService, peers = this.bootstrapPeers): Promise<TestMember> {
    const dataDir = join(this.root, id);
    const machine = new KvMachine();
    const transport = new GrpcRaftTransport({ groupId: 'g1', memberId: id, peerService, logger: this.logger });
    const seed = [...id].reduce((sum, ch) => sum * 31 + ch.charCodeAt(0), 7);
    const group = new RaftGroup<string>({
      groupId: 'g1',
      memberId: id,
      address: server.address,
      peers,
      dataDir,
      stateMachine: machine,
      transport,
      tickMs: 20,
      random: seededRandom(seed + Date.now()),
      logger: this.logger,
      ...this.overrides,
    });
    await group.start();
    const member: TestMember = { id, address: server.address, port: server.port, dataDir, machine, group, server, peerService, running: true };
    this.members.set(id, member);
    return member;
  }

  member(id: string): TestMember {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  running(): TestMember[] {
    return [...this.members.values()].filter((member) => member.running);
  }

  /** The running member that is leader, once exactly one running member says so and the others agree. */
  async leader(timeoutMs = 10_000): Promise<TestMember> {
    return eventually(
      'a leader',
      () => {
        const leaders = this.running().filter((member) => member.group.status().role === 'leader');
        const leader = leaders.length === 1 ? leaders[0] : undefined;
        if (leader === undefined) return undefined;
        // Members the leader counts must follow it; one waiting to be added knows no leader yet.
        const counted = new Set(leader.group.status().members.map((m) => m.memberId));
        const followers = this.running().filter((member) => counted.has(member.id));
        return followers.every((member) => member.group.status().leaderId === leader.id) ? leader : undefined;
      },
      timeoutMs,
    );
  }

  /** Stops a member's group and server (its data stays). */
  async stop(id: string): Promise<void> {
    const member = this.member(id);
    if (!member.running) return;
    member.running = false;
    member.peerService.close();
    await member.server.shutdown();
    await member.group.stop();
  }

  /** Restarts a stopped member on its old port, from its data folder. */
  async restart(id: string, peers?: Record<string, string>): Promise<TestMember> {
    const member = this.member(id);
    if (member.running) throw new Error(`${id} is running`);
    const { server, peerService } = await TestCluster.serve(member.port, this.logger);
    return this.startMember(id, server, peerService, peers);
  }

  /** Adds a brand-new member with an empty data folder that waits to be added to the group. */
  async addMember(id: string): Promise<TestMember> {
    const { server, peerService } = await TestCluster.serve(0, this.logger);
    return this.startMember(id, server, peerService);
  }

  /** Deletes a stopped member's data folder. */
  async wipe(id: string): Promise<void> {
    const member = this.member(id);
    if (member.running) throw new Error(`${id} is running`);
    await rm(member.dataDir, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    for (const member of this.members.values()) {
      if (member.running) await this.stop(member.id);
    }
    await rm(this.root, { recursive: true, force: true });
  }
}
