// A local Concord cluster for cross-process tests: one shard process per group and a coordinator,
// each a real `node services/<role>/dist/main.js` on 127.0.0.1, killed and restarted at will.
//
// Ports are chosen up front rather than with `--listen 127.0.0.1:0`: the coordinator is given the
// shard addresses on its command line, and a restarted shard must come back on the address the
// coordinator (and every routing table) already knows.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { childEnv, nodeBinary, repoRoot } from './paths.js';
import { track } from './reaper.js';

export interface ClusterOptions {
  /** Shard group ids, one shard process each. */
  groups: readonly string[];
  /** Where the shards keep their data; default a fresh temporary directory, removed by stop(). */
  dataDir?: string;
  /** --ring-vnodes of every process; default 128. */
  ringVnodes?: number;
  /** --ring-epoch of every process; default 1. */
  ringEpoch?: number;
  /** How long a process may take to print its "serving" line; default 20 s. */
  readyTimeoutMs?: number;
}

/** How a process ended: an exit code, or the signal that killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const SHARD_MAIN = 'services/shard/dist/main.js';
const COORDINATOR_MAIN = 'services/coordinator/dist/main.js';
const DEFAULT_READY_TIMEOUT_MS = 20_000;
/** SIGTERM gets this long before stop() escalates to SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** Bound on waiting for a process to be gone after SIGKILL (the kernel makes it near-instant). */
const KILL_WAIT_MS = 10_000;
/** Lines of output kept per process for failure messages. */
const KEPT_OUTPUT_LINES = 300;
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
  readonly exits: ProcessExit[] = [];
  /** How many times the process was started. */
  starts = 0;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly args: readonly string[],
    /** The address it listens on, host:port; its "serving" line must name the same. */
    readonly address: string,
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
    this.note(`--- start #${this.starts}: ${this.script} ${this.args.join(' ')}`);
    const child = spawn(nodeBinary, [this.script, ...this.args], {
      cwd: repoRoot,
      env: childEnv(),
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
      createInterface({ input: child.stdout! }).on('line', (line) => {
        this.note(line);
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
function servingAddress(line: string): string | undefined {
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

/** A running local cluster. Process names: "coordinator" and "shard-<group>". */
export class LocalCluster {
  private stopped: Promise<Map<string, ProcessExit | undefined>> | undefined;

  private constructor(
    readonly groups: readonly string[],
    readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    readonly ringVnodes: number,
    readonly ringEpoch: number,
    private readonly readyTimeoutMs: number,
    private readonly processes: ReadonlyMap<string, ManagedProcess>,
  ) {}

  /** Builds the process table (nothing runs yet). */
  static create(options: Required<Omit<ClusterOptions, 'dataDir'>> & { dataDir: string; ownsDataDir: boolean }, ports: readonly number[]): LocalCluster {
    const processes = new Map<string, ManagedProcess>();
    const ringFlags = ['--ring-vnodes', String(options.ringVnodes), '--ring-epoch', String(options.ringEpoch)];
    const shardAddresses = options.groups.map((_, index) => `127.0.0.1:${ports[index]!}`);
    options.groups.forEach((group, index) => {
      const address = shardAddresses[index]!;
      const name = shardProcessName(group);
      processes.set(
        name,
        new ManagedProcess(name, SHARD_MAIN, [
          '--group-id', group,
          '--member-id', `${group}-0`,
          '--listen', address,
          '--data-dir', join(options.dataDir, group),
          '--ring-groups', options.groups.join(','),
          ...ringFlags,
        ], address),
      );
    });
    const coordinatorAddress = `127.0.0.1:${ports[options.groups.length]!}`;
    processes.set(
      'coordinator',
      new ManagedProcess('coordinator', COORDINATOR_MAIN, [
        '--listen', coordinatorAddress,
        '--groups', options.groups.map((group, index) => `${group}=${shardAddresses[index]!}`).join(','),
        ...ringFlags,
      ], coordinatorAddress),
    );
    return new LocalCluster(options.groups, options.dataDir, options.ownsDataDir, options.ringVnodes, options.ringEpoch, options.readyTimeoutMs, processes);
  }

  get coordinatorAddress(): string {
    return this.process('coordinator').address;
  }

  shardAddress(group: string): string {
    return this.process(shardProcessName(group)).address;
  }

  /** Every process name, shards first. */
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

  /** Starts every process: the shards together, then the coordinator. */
  async startAll(): Promise<void> {
    const shards = this.processNames.filter((name) => name !== 'coordinator');
    await Promise.all(shards.map((name) => this.process(name).start(this.readyTimeoutMs)));
    await this.process('coordinator').start(this.readyTimeoutMs);
  }

  /** Sends `signal` (default SIGKILL) to a process and resolves with how it ended. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<ProcessExit> {
    return this.process(name).kill(signal);
  }

  /** Starts a process that is not running again: same flags, same data directory, same address. */
  async restart(name: string): Promise<void> {
    await this.process(name).start(this.readyTimeoutMs);
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
      const wasRunning = this.processNames.filter((name) => this.process(name).running);
      const exits = new Map<string, ProcessExit | undefined>();
      await Promise.all(
        wasRunning.map(async (name) => {
          exits.set(name, await this.process(name).terminate(STOP_GRACE_MS));
        }),
      );
      if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true, maxRetries: 3 });
      return exits;
    })();
    return this.stopped;
  }

  private process(name: string): ManagedProcess {
    const found = this.processes.get(name);
    if (found === undefined) throw new Error(`no process named ${JSON.stringify(name)} (known: ${this.processNames.join(', ')})`);
    return found;
  }
}

/** The process name of a group's shard. */
export function shardProcessName(group: string): string {
  return `shard-${group}`;
}

/**
 * Starts shards on free ports, waits until each prints "serving", then starts the coordinator
 * pointing at them. On failure everything started is stopped and the error carries the output.
 */
export async function startLocalCluster(options: ClusterOptions): Promise<LocalCluster> {
  if (options.groups.length === 0 || new Set(options.groups).size !== options.groups.length) {
    throw new Error(`startLocalCluster: groups must be distinct and at least one (got ${JSON.stringify(options.groups)})`);
  }
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'concord-test-')));
  let lastError: unknown;
  for (let attempt = 1; attempt <= PORT_RACE_ATTEMPTS; attempt++) {
    const ports = await freePorts(options.groups.length + 1);
    const cluster = LocalCluster.create(
      {
        groups: options.groups,
        dataDir,
        ownsDataDir,
        ringVnodes: options.ringVnodes ?? 128,
        ringEpoch: options.ringEpoch ?? 1,
        readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
      },
      ports,
    );
    try {
      await cluster.startAll();
      return cluster;
    } catch (error) {
      lastError = error;
      const portTaken = error instanceof Error && /EADDRINUSE|address already in use/i.test(error.message);
      // Keep the data directory for the retry; stop() removes it only on the last failure.
      await stopProcessesOnly(cluster);
      if (!portTaken) break;
    }
  }
  if (ownsDataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
  throw lastError;
}

async function stopProcessesOnly(cluster: LocalCluster): Promise<void> {
  await Promise.all(cluster.processNames.filter((name) => cluster.running(name)).map((name) => cluster.kill(name, 'SIGKILL')));
}
