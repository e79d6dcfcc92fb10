// A local Concord cluster for cross-process tests: every replica of every shard group and the
// coordinators, each a real `node services/<role>/dist/main.js` on 127.0.0.1, killed and restarted
// at will. By default, as `npm start` runs it, each shard group is three Raft replicas and the
// coordinators are three members of the meta group (Raft); `coordinators: 1` runs one coordinator
// with the ring from its flags (the config engine) instead.
//
// Ports are chosen up front rather than with `--listen 127.0.0.1:0`: the members of a Raft group
// and the coordinators are given the members' addresses on their command lines, and a restarted
// member must come back on the address they (and every routing table) already know.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { ClusterClient, MemberRole, type MemberStatus as ClusterMemberStatus, type StatusResponse } from '@concord/proto/cluster';
import { ShardClient, type ShardStatusResponse } from '@concord/proto/shard';
import { CLIENT_CHANNEL_OPTIONS, channelCredentials } from '@concord/runtime';
import { describeError, sleep, unary } from './grpc.js';
import { childEnv, nodeBinary, repoRoot } from './paths.js';
import { track } from './reaper.js';

export interface ClusterOptions {
  /** Shard group ids. */
  groups: readonly string[];
  /** Replicas (processes) per group; default 3. The single engine runs exactly one. */
  replicas?: number;
  /** Consensus engine of every shard group; default raft. */
  engine?: 'raft' | 'single';
  /**
   * Coordinators: 3 (the default) form the meta group with the raft engine, as `npm start` runs
   * them; 1 runs a single coordinator with the ring from --groups (the config engine).
   */
  coordinators?: 1 | 3;
  /** Extra flags for every coordinator process. */
  coordinatorArgs?: readonly string[];
  /** Extra flags for every shard process, e.g. ['--snapshot-every', '200']. */
  shardArgs?: readonly string[];
  /** Where the shards keep their data; default a fresh temporary directory, removed by stop(). */
  dataDir?: string;
  /** --ring-vnodes of every process; default 128. */
  ringVnodes?: number;
  /** --ring-epoch of every process; default 1. */
  ringEpoch?: number;
  /** How long a process may take to print its "serving" line; default 30 s. */
  readyTimeoutMs?: number;
  /**
   * How long startAll() waits for every Raft group to elect a leader, and for the meta group to
   * answer Cluster.GetRing; default 15 s (a liveness bound).
   */
  leaderTimeoutMs?: number;
  /**
   * Extra environment of every process, e.g. the OTEL_* variables that make it export traces.
   * Every process runs as `npm start` runs it, `node --import @concord/runtime/register`, with
   * CONCORD_SERVICE_NAME naming its role (concord-shard, concord-coordinator).
   */
  env?: Readonly<Record<string, string>>;
  /**
   * Mutual TLS: every process gets --tls-cert, --tls-key and --tls-ca with these PEM files, and
   * the harness's own Status probes present the same certificate (see `credentials`). The
   * certificate must name 127.0.0.1 (and `advertiseHost`, if given). Default plaintext.
   */
  tls?: TlsFiles;
  /**
   * Every process listens on 127.0.0.1:<port> and advertises <advertiseHost>:<port> with
   * --advertise; that advertised address is the one --peers, --groups, the "serving" line and the
   * harness's clients use. Default none: processes are known by 127.0.0.1:<port>.
   */
  advertiseHost?: string;
}

/** Paths of PEM files for ClusterOptions.tls. */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** What one coordinator says about itself as a member of the meta group. */
export interface CoordinatorStatus {
  /** Process name, e.g. "coordinator-1". */
  name: string;
  address: string;
  /** Its own entry: role, term, commit and applied index. */
  member: ClusterMemberStatus;
  /** The meta leader's member id as this coordinator knows it ('' when none). */
  leaderId: string;
}

/** What one replica said about itself, and which process it is. */
export interface MemberStatus {
  /** Process name, e.g. "shard-g2-1". */
  name: string;
  address: string;
  status: ShardStatusResponse;
}

/** How a process ended: an exit code, or the signal that killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const SHARD_MAIN = 'services/shard/dist/main.js';
const COORDINATOR_MAIN = 'services/coordinator/dist/main.js';
/** OpenTelemetry service.name of each role, as npm start and the services' own defaults name them. */
const SHARD_SERVICE_NAME = 'concord-shard';
const COORDINATOR_SERVICE_NAME = 'concord-coordinator';
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_LEADER_TIMEOUT_MS = 15_000;
const DEFAULT_REPLICAS = 3;
/** Deadline of one Shard.Status or Cluster.Status/GetRing probe. */
const STATUS_DEADLINE_MS = 2_000;
/** The coordinators' request metadata asking one coordinator for its own meta member status only. */
const STATUS_SCOPE_HEADER = 'concord-status-scope';
/** Pause between Status polls while waiting for a leader or a catch-up. */
const POLL_MS = 50;
/** SIGTERM gets this long before stop() escalates to SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** Bound on waiting for a process to be gone after SIGKILL (the kernel makes it near-instant). */
const KILL_WAIT_MS = 10_000;
/** Lines of output kept per process for failure messages. */
const KEPT_OUTPUT_LINES = 300;
/** Lines of the current run kept for outputOf(): a shard logs lifecycle events, not requests. */
const KEPT_RUN_LINES = 20_000;
/** Attempts at starting a cluster when a chosen port was taken in between (a race with other programs). */
const PORT_RACE_ATTEMPTS = 3;

/** Formats an exit for messages: "SIGKILL" or "exit 2". */
export function describeExit(exit: ProcessExit | undefined): string {
  if (exit === undefined) return 'still running';
  return exit.signal !== null ? exit.signal : `exit ${exit.code}`;
}

/** One Concord process: its command line stays fixed across restarts, so it comes back as itself. */
class ManagedProcess {
  private child: ChildProcess | undefined;
  private closed: Promise<ProcessExit> | undefined;
  private readonly output: string[] = [];
  /** stdout lines of the current (or last) run. */
  runLines: string[] = [];
  readonly exits: ProcessExit[] = [];
  /** How many times the process was started. */
  starts = 0;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly args: readonly string[],
    /** The address it listens on, host:port; its "serving" line must name the same. */
    readonly address: string,
    /** Extra environment: the service name of its role and ClusterOptions.env. */
    private readonly env: Readonly<Record<string, string>> = {},
  ) {}

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the process and resolves once it printed its "serving" line. */
  async start(readyTimeoutMs: number): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.child?.pid})`);
    this.starts += 1;
    this.runLines = [];
    this.note(`--- start #${this.starts}: ${this.script} ${this.args.join(' ')}`);
    // Telemetry starts before any application module loads, so gRPC clients are traced too.
    const child = spawn(nodeBinary, ['--import', '@concord/runtime/register', this.script, ...this.args], {
      cwd: repoRoot,
      env: childEnv(this.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    this.child = child;
    // 'close' rather than 'exit': it comes after stdout/stderr are drained, so the log is complete.
    this.closed = new Promise<ProcessExit>((resolve) => {
      child.once('close', (code, signal) => {
        const exit = { code, signal };
        this.exits.push(exit);
        this.note(`--- ended: ${describeExit(exit)}`);
        resolve(exit);
      });
    });
    child.stderr?.setEncoding('utf8');
    createInterface({ input: child.stderr! }).on('line', (line) => this.note(`[stderr] ${line}`));

    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name} did not print its "serving" line within ${readyTimeoutMs} ms\n${this.tail()}`));
      }, readyTimeoutMs);
      const runLines = this.runLines;
      createInterface({ input: child.stdout! }).on('line', (line) => {
        this.note(line);
        if (runLines.length < KEPT_RUN_LINES) runLines.push(line);
        const address = servingAddress(line);
        if (address === undefined) return;
        clearTimeout(timer);
        if (address !== this.address) {
          reject(new Error(`${this.name} is serving on ${address}, but it was told to listen on ${this.address}\n${this.tail()}`));
        } else {
          resolve();
        }
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} could not be started: ${error.message}`));
      });
      void this.closed!.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} ended (${describeExit(exit)}) before it was serving\n${this.tail()}`));
      });
    });
    try {
      await ready;
    } catch (error) {
      await this.kill('SIGKILL').catch(() => undefined);
      throw error;
    }
  }

  /** Sends `signal` and resolves with how the process ended; at once if it is not running. */
  async kill(signal: NodeJS.Signals, waitMs = KILL_WAIT_MS): Promise<ProcessExit> {
    const child = this.child;
    const closed = this.closed;
    if (child === undefined || closed === undefined) throw new Error(`${this.name} was never started`);
    if (this.running) child.kill(signal);
    return this.waitForExit(closed, waitMs, signal);
  }

  /** SIGTERM, then SIGKILL if the process is still there after the grace period. */
  async terminate(graceMs: number): Promise<ProcessExit | undefined> {
    if (this.child === undefined || this.closed === undefined) return undefined;
    if (!this.running) return this.closed;
    this.child.kill('SIGTERM');
    try {
      return await this.waitForExit(this.closed, graceMs, 'SIGTERM');
    } catch {
      this.note(`--- still running ${graceMs} ms after SIGTERM; sending SIGKILL`);
      return this.kill('SIGKILL');
    }
  }

  private async waitForExit(closed: Promise<ProcessExit>, waitMs: number, signal: string): Promise<ProcessExit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} did not end within ${waitMs} ms of ${signal}`)), waitMs);
    });
    try {
      return await Promise.race([closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The last lines of the process's stdout and stderr, across its restarts. */
  tail(lines = 60): string {
    return this.output.slice(-lines).map((line) => `  ${this.name} | ${line}`).join('\n');
  }

  private note(line: string): void {
    this.output.push(line);
    if (this.output.length > KEPT_OUTPUT_LINES) this.output.splice(0, this.output.length - KEPT_OUTPUT_LINES);
  }
}

/** The address of a `{"msg":"serving","address":...}` JSON log line, else undefined. */
export function servingAddress(line: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const record = JSON.parse(line) as { msg?: unknown; address?: unknown };
    return record.msg === 'serving' && typeof record.address === 'string' ? record.address : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `count` distinct free TCP ports on 127.0.0.1. All listeners stay open until every port is known,
 * so the kernel cannot hand the same port out twice; another program can still take one before
 * the service binds it, which startLocalCluster retries.
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

/** One shard replica of the cluster. */
interface ShardMember {
  group: string;
  /** --member-id, e.g. "g2-1". */
  memberId: string;
  /** Process name, e.g. "shard-g2-1". */
  name: string;
  address: string;
}

/** One coordinator of the cluster. */
interface CoordinatorMember {
  /** --member-id with raft, e.g. "coordinator-1". */
  memberId: string;
  /** Process name: "coordinator" when it is the only one, else its member id. */
  name: string;
  address: string;
}

interface ResolvedOptions {
  groups: readonly string[];
  replicas: number;
  engine: 'raft' | 'single';
  coordinators: number;
  coordinatorArgs: readonly string[];
  shardArgs: readonly string[];
  dataDir: string;
  ownsDataDir: boolean;
  ringVnodes: number;
  ringEpoch: number;
  readyTimeoutMs: number;
  leaderTimeoutMs: number;
  env: Readonly<Record<string, string>>;
  tls: TlsFiles | undefined;
  advertiseHost: string | undefined;
}

/** The address a process is known by: 127.0.0.1:<port>, or <advertiseHost>:<port>. */
function addressOf(options: ResolvedOptions, port: number): string {
  return `${options.advertiseHost ?? '127.0.0.1'}:${port}`;
}

/** --listen on 127.0.0.1 with the port of `address`, plus --advertise `address` when it names another host; and the --tls-* flags. */
function networkFlags(options: ResolvedOptions, address: string): string[] {
  const port = address.slice(address.lastIndexOf(':') + 1);
  return [
    '--listen', `127.0.0.1:${port}`,
    ...(options.advertiseHost !== undefined ? ['--advertise', address] : []),
    ...(options.tls !== undefined ? ['--tls-cert', options.tls.cert, '--tls-key', options.tls.key, '--tls-ca', options.tls.ca] : []),
  ];
}

/**
 * A running local cluster. Process names: "coordinator-0", "coordinator-1", "coordinator-2" (or
 * "coordinator" when it runs one), and "shard-<member>", where the members of group g2 are g2-0,
 * g2-1, g2-2 (see shardProcessName).
 */
export class LocalCluster {
  private stopped: Promise<Map<string, ProcessExit | undefined>> | undefined;
  private readonly statusClients = new Map<string, ShardClient>();
  private readonly clusterClients = new Map<string, ClusterClient>();
  private channelCredentials: ChannelCredentials | undefined;

  private constructor(
    private readonly options: ResolvedOptions,
    private readonly shardMembers: ShardMember[],
    private readonly coordinatorMembers: readonly CoordinatorMember[],
    private readonly processes: Map<string, ManagedProcess>,
  ) {}

  /** Builds the process table (nothing runs yet). */
  static create(options: ResolvedOptions, ports: readonly number[]): LocalCluster {
    const processes = new Map<string, ManagedProcess>();
    const ringFlags = ['--ring-vnodes', String(options.ringVnodes), '--ring-epoch', String(options.ringEpoch)];
    const members: ShardMember[] = options.groups.flatMap((group, groupIndex) =>
      Array.from({ length: options.replicas }, (_, replica) => ({
        group,
        memberId: memberIdOf(group, replica),
        name: shardProcessName(group, replica),
        address: addressOf(options, ports[groupIndex * options.replicas + replica]!),
      })),
    );
    for (const member of members) {
      const peers = members.filter((other) => other.group === member.group).map((other) => `${other.memberId}=${other.address}`);
      processes.set(
        member.name,
        new ManagedProcess(member.name, SHARD_MAIN, [
          '--engine', options.engine,
          '--group-id', member.group,
          '--member-id', member.memberId,
          ...networkFlags(options, member.address),
          ...(options.engine === 'raft' ? ['--peers', peers.join(',')] : []),
          '--data-dir', join(options.dataDir, member.memberId),
          '--ring-groups', options.groups.join(','),
          ...ringFlags,
          ...options.shardArgs,
        ], member.address, { ...options.env, CONCORD_SERVICE_NAME: SHARD_SERVICE_NAME }),
      );
    }
    const groupsFlag = options.groups
      .map((group) => `${group}=${members.filter((member) => member.group === group).map((member) => member.address).join('|')}`)
      .join(',');
    const coordinators: CoordinatorMember[] = Array.from({ length: options.coordinators }, (_, index) => ({
      memberId: `coordinator-${index}`,
      name: options.coordinators === 1 ? 'coordinator' : `coordinator-${index}`,
      address: addressOf(options, ports[members.length + index]!),
    }));
    const metaPeers = coordinators.map((coordinator) => `${coordinator.memberId}=${coordinator.address}`).join(',');
    for (const coordinator of coordinators) {
      const engineFlags =
        options.coordinators === 1
          ? // One coordinator with the ring from --groups (the config engine).
            ['--engine', 'config', ...networkFlags(options, coordinator.address)]
          : // The meta group, as `npm start` runs it: --groups and the ring flags seed it when empty.
            ['--engine', 'raft', '--member-id', coordinator.memberId, ...networkFlags(options, coordinator.address), '--peers', metaPeers, '--data-dir', join(options.dataDir, coordinator.memberId)];
      processes.set(
        coordinator.name,
        new ManagedProcess(coordinator.name, COORDINATOR_MAIN, [...engineFlags, '--groups', groupsFlag, ...ringFlags, ...options.coordinatorArgs], coordinator.address, {
          ...options.env,
          CONCORD_SERVICE_NAME: COORDINATOR_SERVICE_NAME,
        }),
      );
    }
    return new LocalCluster(options, members, coordinators, processes);
  }

  get groups(): readonly string[] {
    return this.options.groups;
  }

  get dataDir(): string {
    return this.options.dataDir;
  }

  get ringVnodes(): number {
    return this.options.ringVnodes;
  }

  get ringEpoch(): number {
    return this.options.ringEpoch;
  }

  get engine(): 'raft' | 'single' {
    return this.options.engine;
  }

  /**
   * Credentials for a client of this cluster's processes: with ClusterOptions.tls, mutual TLS
   * presenting that certificate; else plaintext.
   */
  get credentials(): ChannelCredentials {
    const tls = this.options.tls;
    this.channelCredentials ??= channelCredentials(
      tls === undefined ? undefined : { cert: readFileSync(tls.cert), key: readFileSync(tls.key), ca: readFileSync(tls.ca) },
    );
    return this.channelCredentials;
  }

  /** The first coordinator's address: the one `npm start` and the README name. */
  get coordinatorAddress(): string {
    return this.coordinatorMembers[0]!.address;
  }

  /** Every coordinator's address, in member order. */
  get coordinatorAddresses(): string[] {
    return this.coordinatorMembers.map((coordinator) => coordinator.address);
  }

  /** Every coordinator's process name, in member order. */
  get coordinatorNames(): string[] {
    return this.coordinatorMembers.map((coordinator) => coordinator.name);
  }

  /** Whether the coordinators form a Raft meta group (more than one), rather than one with the config engine. */
  get metaGroup(): boolean {
    return this.options.coordinators > 1;
  }

  /** The address of a process by name ("shard-g1-2", "coordinator"). */
  address(name: string): string {
    return this.process(name).address;
  }

  /** The address of replica `replica` (default 0) of `group`. */
  shardAddress(group: string, replica = 0): string {
    return this.process(shardProcessName(group, replica)).address;
  }

  /** Every replica address of `group`, in member order: what the coordinator's --groups lists. */
  shardAddresses(group: string): string[] {
    return this.membersOf(group).map((member) => member.address);
  }

  /** The process names of `group`'s replicas, in member order. */
  shardNames(group: string): string[] {
    return this.membersOf(group).map((member) => member.name);
  }

  /** Every process name, shards first, then the coordinators. */
  get processNames(): string[] {
    return [...this.processes.keys()];
  }

  /** The pid of a running process, undefined when it is not running. */
  pid(name: string): number | undefined {
    return this.process(name).pid;
  }

  running(name: string): boolean {
    return this.process(name).running;
  }

  /** How each previous run of the process ended, oldest first. */
  exits(name: string): readonly ProcessExit[] {
    return this.process(name).exits;
  }

  /** The stdout lines of the process's current (or last) run. */
  outputOf(name: string): readonly string[] {
    return this.process(name).runLines;
  }

  /**
   * Starts every process that is not running: the shards together, then, with Raft, waits until
   * every group has elected a leader (so the first request does not race the first election), then
   * the coordinators together; with the meta group, waits until every coordinator answers
   * Cluster.GetRing (the meta group has a leader and holds the ring: "serving" only means a
   * coordinator recovered its own log).
   */
  async startAll(): Promise<void> {
    const coordinatorNames = new Set(this.coordinatorNames);
    const shards = this.processNames.filter((name) => !coordinatorNames.has(name) && !this.running(name));
    await Promise.all(shards.map((name) => this.process(name).start(this.options.readyTimeoutMs)));
    if (this.options.engine === 'raft') {
      await Promise.all(this.groups.map((group) => this.leaderOf(group, { timeoutMs: this.options.leaderTimeoutMs })));
    }
    const coordinators = this.coordinatorNames.filter((name) => !this.running(name));
    await Promise.all(coordinators.map((name) => this.process(name).start(this.options.readyTimeoutMs)));
    if (this.metaGroup) await Promise.all(this.coordinatorNames.map((name) => this.ringServed(name, { timeoutMs: this.options.leaderTimeoutMs })));
  }

  /** Sends `signal` (default SIGKILL) to a process and resolves with how it ended. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<ProcessExit> {
    return this.process(name).kill(signal);
  }

  /** Starts a process that is not running again: same flags, same data directory, same address. */
  async restart(name: string): Promise<void> {
    await this.process(name).start(this.options.readyTimeoutMs);
  }

  /**
   * Starts a new, empty replica `replica` of a Raft `group` with --join on a free port: --peers
   * lists the group's replicas that run now (or `peers`, process names), and the replica waits to
   * be added (Cluster.ChangeShardMembership). From then on it is a process like the others: kill,
   * restart and stop know it by its name, "shard-<group>-<replica>", which it resolves with, once
   * it printed its "serving" line.
   */
  async startJoiningShard(group: string, replica: number, { peers }: { peers?: readonly string[] } = {}): Promise<string> {
    if (this.options.engine !== 'raft') throw new Error('startJoiningShard: only a raft group takes new replicas');
    const name = shardProcessName(group, replica);
    if (this.processes.has(name)) throw new Error(`startJoiningShard: ${name} exists already`);
    const current = this.membersOf(group).filter((member) => (peers === undefined ? this.running(member.name) : peers.includes(member.name)));
    if (current.length === 0) throw new Error(`startJoiningShard: no current member of ${group} to list in --peers`);
    const [port] = await freePorts(1);
    const member: ShardMember = { group, memberId: memberIdOf(group, replica), name, address: addressOf(this.options, port!) };
    const process = new ManagedProcess(name, SHARD_MAIN, [
      '--engine', 'raft',
      '--group-id', group,
      '--member-id', member.memberId,
      ...networkFlags(this.options, member.address),
      '--join',
      '--peers', current.map((other) => `${other.memberId}=${other.address}`).join(','),
      '--data-dir', join(this.dataDir, member.memberId),
      '--ring-groups', this.groups.join(','),
      '--ring-vnodes', String(this.ringVnodes),
      '--ring-epoch', String(this.ringEpoch),
      ...this.options.shardArgs,
    ], member.address, { ...this.options.env, CONCORD_SERVICE_NAME: SHARD_SERVICE_NAME });
    this.shardMembers.push(member);
    // Shards first, then the coordinators (see processNames).
    const coordinators = this.coordinatorNames.map((each) => [each, this.process(each)] as const);
    for (const [each] of coordinators) this.processes.delete(each);
    this.processes.set(name, process);
    for (const [each, managed] of coordinators) this.processes.set(each, managed);
    await process.start(this.options.readyTimeoutMs);
    return name;
  }

  /** Shard.Status of one replica (one attempt, short deadline). */
  async shardStatus(name: string): Promise<ShardStatusResponse> {
    const address = this.process(name).address;
    let client = this.statusClients.get(address);
    if (client === undefined) {
      client = new ShardClient(address, this.credentials, CLIENT_CHANNEL_OPTIONS);
      this.statusClients.set(address, client);
    }
    return unary(client.status.bind(client), {}, STATUS_DEADLINE_MS);
  }

  /**
   * The leader of `group`: polls Shard.Status of every running replica until exactly one says it
   * leads, in the highest term any of them reports, and every replica that answers names its
   * address. Fails after `timeoutMs` (a liveness bound, default 15 s) with what each replica said.
   */
  async leaderOf(group: string, { timeoutMs = DEFAULT_LEADER_TIMEOUT_MS }: { timeoutMs?: number } = {}): Promise<MemberStatus> {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    for (;;) {
      const answers = await this.groupStatus(group);
      const statuses = answers.filter((answer): answer is MemberStatus => !('error' in answer));
      const topTerm = Math.max(0, ...statuses.map((answer) => answer.status.term));
      const leaders = statuses.filter((answer) => answer.status.role === 'LEADER' && answer.status.term === topTerm);
      const leader = leaders.length === 1 ? leaders[0]! : undefined;
      if (leader !== undefined && statuses.every((answer) => answer.status.leaderAddress === leader.address)) return leader;
      seen = answers
        .map((answer) =>
          'error' in answer
            ? `${answer.name}: ${answer.error}`
            : `${answer.name}: ${answer.status.role} term ${answer.status.term} leader ${answer.status.leaderAddress || '(none)'}`,
        )
        .join('; ');
      if (Date.now() > deadline) throw new Error(`group ${group} has no leader that every running replica follows after ${timeoutMs} ms: ${seen}`);
      await sleep(POLL_MS);
    }
  }

  /** Shard.Status of every running replica of `group`; a replica that does not answer gives its error. */
  async groupStatus(group: string): Promise<(MemberStatus | { name: string; address: string; error: string })[]> {
    const running = this.membersOf(group).filter((member) => this.running(member.name));
    return Promise.all(
      running.map(async (member) => {
        try {
          return { name: member.name, address: member.address, status: await this.shardStatus(member.name) };
        } catch (error) {
          return { name: member.name, address: member.address, error: describeError(error) };
        }
      }),
    );
  }

  /**
   * Waits until replica `name` has applied at least `index` (default: the commit index its
   * group's leader reports now). Resolves with its status; fails after `timeoutMs` (a liveness bound).
   */
  async caughtUp(name: string, { index, timeoutMs = DEFAULT_LEADER_TIMEOUT_MS }: { index?: number; timeoutMs?: number } = {}): Promise<ShardStatusResponse> {
    const member = this.shardMembers.find((each) => each.name === name);
    if (member === undefined) throw new Error(`no shard replica named ${JSON.stringify(name)}`);
    const deadline = Date.now() + timeoutMs;
    const target = index ?? (await this.leaderOf(member.group, { timeoutMs })).status.commitIndex;
    let last = 'no answer yet';
    for (;;) {
      try {
        const status = await this.shardStatus(name);
        if (status.appliedIndex >= target) return status;
        last = `applied ${status.appliedIndex}, role ${status.role}`;
      } catch (error) {
        last = describeError(error);
      }
      if (Date.now() > deadline) throw new Error(`${name} did not apply index ${target} within ${timeoutMs} ms (last: ${last})`);
      await sleep(POLL_MS);
    }
  }

  /**
   * Waits until coordinator `name` answers Cluster.GetRing, which it does once the meta group has a
   * leader holding the ring (a follower forwards the call to it). Resolves with the ring's epoch;
   * fails after `timeoutMs` (a liveness bound) with the last answer.
   */
  async ringServed(name: string, { timeoutMs = DEFAULT_LEADER_TIMEOUT_MS }: { timeoutMs?: number } = {}): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const client = this.clusterClient(name);
    let last = 'no answer yet';
    for (;;) {
      try {
        return (await unary(client.getRing.bind(client), {}, STATUS_DEADLINE_MS)).epoch;
      } catch (error) {
        last = describeError(error);
      }
      if (Date.now() > deadline) throw new Error(`${name} did not answer Cluster.GetRing within ${timeoutMs} ms (last: ${last})`);
      await sleep(POLL_MS);
    }
  }

  /** What coordinator `name` says about itself in the meta group (one attempt, short deadline). */
  async coordinatorStatus(name: string): Promise<CoordinatorStatus> {
    const client = this.clusterClient(name);
    const metadata = new Metadata();
    metadata.set(STATUS_SCOPE_HEADER, 'member');
    const response = await new Promise<StatusResponse>((resolve, reject) => {
      client.status({}, metadata, { deadline: Date.now() + STATUS_DEADLINE_MS }, (error, answer) => (error === null ? resolve(answer) : reject(error)));
    });
    const member = response.meta?.members[0];
    if (member === undefined) throw new Error(`${name} answered Cluster.Status without its meta member`);
    return { name, address: this.address(name), member, leaderId: response.meta?.leaderId ?? '' };
  }

  /**
   * The meta group's leader: polls every running coordinator until exactly one says it leads, in
   * the highest term any of them reports, and every one that answers names it. Fails after
   * `timeoutMs` (a liveness bound, default 15 s) with what each said.
   */
  async metaLeader({ timeoutMs = DEFAULT_LEADER_TIMEOUT_MS }: { timeoutMs?: number } = {}): Promise<CoordinatorStatus> {
    if (!this.metaGroup) throw new Error('this cluster runs one coordinator with the config engine: there is no meta group');
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    for (;;) {
      const answers = await Promise.all(
        this.coordinatorNames
          .filter((name) => this.running(name))
          .map(async (name) => {
            try {
              return await this.coordinatorStatus(name);
            } catch (error) {
              return { name, error: describeError(error) };
            }
          }),
      );
      const statuses = answers.filter((answer): answer is CoordinatorStatus => !('error' in answer));
      const topTerm = Math.max(0, ...statuses.map((answer) => answer.member.term));
      const leaders = statuses.filter((answer) => answer.member.role === MemberRole.MEMBER_ROLE_LEADER && answer.member.term === topTerm);
      const leader = leaders.length === 1 ? leaders[0]! : undefined;
      if (leader !== undefined && statuses.every((answer) => answer.leaderId === leader.member.memberId)) return leader;
      seen = answers
        .map((answer) =>
          'error' in answer ? `${answer.name}: ${answer.error}` : `${answer.name}: ${MemberRole[answer.member.role]} term ${answer.member.term} leader ${answer.leaderId || '(none)'}`,
        )
        .join('; ');
      if (Date.now() > deadline) throw new Error(`the meta group has no leader that every running coordinator follows after ${timeoutMs} ms: ${seen}`);
      await sleep(POLL_MS);
    }
  }

  /** The recent output of one process, or of all of them, for failure messages. */
  logs(name?: string): string {
    const names = name === undefined ? this.processNames : [name];
    return names.map((each) => this.process(each).tail()).join('\n');
  }

  /**
   * SIGTERM to every running process, SIGKILL to any still running 5 s later; then removes the
   * data directory it created. Resolves with how each process ended (undefined: never started).
   * Idempotent: later calls return the first call's result.
   */
  stop(): Promise<Map<string, ProcessExit | undefined>> {
    this.stopped ??= (async () => {
      for (const client of [...this.statusClients.values(), ...this.clusterClients.values()]) client.close();
      this.statusClients.clear();
      this.clusterClients.clear();
      const wasRunning = this.processNames.filter((name) => this.process(name).running);
      const exits = new Map<string, ProcessExit | undefined>();
      await Promise.all(
        wasRunning.map(async (name) => {
          exits.set(name, await this.process(name).terminate(STOP_GRACE_MS));
        }),
      );
      if (this.options.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true, maxRetries: 3 });
      return exits;
    })();
    return this.stopped;
  }

  private membersOf(group: string): ShardMember[] {
    const members = this.shardMembers.filter((member) => member.group === group);
    if (members.length === 0) throw new Error(`no shard group ${JSON.stringify(group)} (known: ${this.groups.join(', ')})`);
    return members;
  }

  private clusterClient(name: string): ClusterClient {
    const address = this.process(name).address;
    let client = this.clusterClients.get(address);
    if (client === undefined) {
      client = new ClusterClient(address, this.credentials, CLIENT_CHANNEL_OPTIONS);
      this.clusterClients.set(address, client);
    }
    return client;
  }

  private process(name: string): ManagedProcess {
    const found = this.processes.get(name);
    if (found === undefined) throw new Error(`no process named ${JSON.stringify(name)} (known: ${this.processNames.join(', ')})`);
    return found;
  }
}

/** The member id of replica `replica` of `group`: "g2-1". */
export function memberIdOf(group: string, replica: number): string {
  return `${group}-${replica}`;
}

/** The process name of replica `replica` (default 0) of `group`: "shard-g2-1". */
export function shardProcessName(group: string, replica = 0): string {
  return `shard-${memberIdOf(group, replica)}`;
}

/**
 * Starts every replica on free ports, waits until each prints "serving" (and, with Raft, until
 * every group has a leader), then starts the coordinators pointing at them and, with the meta
 * group, waits until it serves the ring. On failure everything started is stopped and the error
 * carries the output.
 */
export async function startLocalCluster(options: ClusterOptions): Promise<LocalCluster> {
  if (options.groups.length === 0 || new Set(options.groups).size !== options.groups.length) {
    throw new Error(`startLocalCluster: groups must be distinct and at least one (got ${JSON.stringify(options.groups)})`);
  }
  const engine = options.engine ?? 'raft';
  const replicas = options.replicas ?? (engine === 'single' ? 1 : DEFAULT_REPLICAS);
  if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`startLocalCluster: replicas must be a positive integer (got ${replicas})`);
  if (engine === 'single' && replicas !== 1) throw new Error(`startLocalCluster: the single engine runs one replica per group (got replicas ${replicas})`);
  const coordinators = options.coordinators ?? 3;
  if (coordinators !== 1 && coordinators !== 3) throw new Error(`startLocalCluster: coordinators must be 1 (config engine) or 3 (the meta group) (got ${String(coordinators)})`);
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'concord-test-')));
  const resolved: Omit<ResolvedOptions, 'dataDir' | 'ownsDataDir'> = {
    groups: options.groups,
    replicas,
    engine,
    coordinators,
    coordinatorArgs: options.coordinatorArgs ?? [],
    shardArgs: options.shardArgs ?? [],
    ringVnodes: options.ringVnodes ?? 128,
    ringEpoch: options.ringEpoch ?? 1,
    readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
    leaderTimeoutMs: options.leaderTimeoutMs ?? DEFAULT_LEADER_TIMEOUT_MS,
    env: options.env ?? {},
    tls: options.tls,
    advertiseHost: options.advertiseHost,
  };
  let lastError: unknown;
  for (let attempt = 1; attempt <= PORT_RACE_ATTEMPTS; attempt++) {
    const ports = await freePorts(options.groups.length * replicas + coordinators);
    const cluster = LocalCluster.create({ ...resolved, dataDir, ownsDataDir }, ports);
    try {
      await cluster.startAll();
      return cluster;
    } catch (error) {
      lastError = error;
      const portTaken = error instanceof Error && /EADDRINUSE|address already in use/i.test(error.message);
      // Keep the data directory for the retry; stop() removes it only on the last failure.
      await stopProcessesOnly(cluster);
      // Raft members record their group's addresses in their logs when they bootstrap: a retry on
      // other ports must start from empty data directories, which only one this harness made can be.
      const raftSomewhere = engine === 'raft' || coordinators > 1;
      if (!portTaken || (raftSomewhere && !ownsDataDir)) break;
      if (raftSomewhere) await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
    }
  }
  if (ownsDataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
  throw lastError;
}

async function stopProcessesOnly(cluster: LocalCluster): Promise<void> {
  await Promise.all(cluster.processNames.filter((name) => cluster.running(name)).map((name) => cluster.kill(name, 'SIGKILL')));
}
