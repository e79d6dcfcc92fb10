// A new, empty coordinator started with --join next to a LocalCluster, the way docs tell an
// operator to replace a lost coordinator: --peers names the meta group's running members (not the
// new one), --listen is the address they will dial, and the process waits to be added
// (Cluster.ChangeShardMembership with group_id "meta"). It is a real process on 127.0.0.1, killed
// with SIGKILL or stopped with SIGTERM like the cluster's own, and killed with them if the test
// process dies (reaper).
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata } from '@grpc/grpc-js';
import type { MemberStatus, StatusResponse } from '@concord/proto/cluster';
import { describeExit, freePorts, servingAddress, type LocalCluster, type ProcessExit } from './cluster.js';
import { clusterClient } from './grpc.js';
import { childEnv, nodeBinary, repoRoot } from './paths.js';
import { track } from './reaper.js';

const COORDINATOR_MAIN = 'services/coordinator/dist/main.js';
const DEFAULT_READY_TIMEOUT_MS = 30_000;
/** Bound on waiting for the process to end after a signal. */
const EXIT_WAIT_MS = 10_000;
const KEPT_OUTPUT_LINES = 300;
/** Deadline of one member probe. */
const STATUS_DEADLINE_MS = 2_000;

export interface JoinOptions {
  /** Process names of the coordinators to list in --peers; default every original coordinator that runs now. */
  peers?: readonly string[];
  /** Extra flags, e.g. ['--snapshot-every', '50']. */
  args?: readonly string[];
  readyTimeoutMs?: number;
}

/** A coordinator process started with --join. */
export class JoiningCoordinator {
  private readonly output: string[] = [];
  private readonly closed: Promise<ProcessExit>;

  private constructor(
    readonly memberId: string,
    readonly address: string,
    private readonly child: ChildProcess,
  ) {
    this.closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  }

  /** Starts it and resolves once it printed its "serving" line on `address`. */
  static async start(memberId: string, address: string, argv: readonly string[], readyTimeoutMs: number): Promise<JoiningCoordinator> {
    const child = spawn(nodeBinary, [COORDINATOR_MAIN, ...argv], { cwd: repoRoot, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    const coordinator = new JoiningCoordinator(memberId, address, child);
    coordinator.note(`--- start: ${COORDINATOR_MAIN} ${argv.join(' ')}`);
    createInterface({ input: child.stderr! }).on('line', (line) => coordinator.note(`[stderr] ${line}`));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${memberId} did not print its "serving" line within ${readyTimeoutMs} ms\n${coordinator.tail()}`)), readyTimeoutMs);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        coordinator.note(line);
        const serving = servingAddress(line);
        if (serving === undefined) return;
        clearTimeout(timer);
        if (serving === address) resolve();
        else reject(new Error(`${memberId} is serving on ${serving}, but it was told to listen on ${address}\n${coordinator.tail()}`));
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`${memberId} could not be started: ${error.message}`));
      });
      void coordinator.closed.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`${memberId} ended (${describeExit(exit)}) before it was serving\n${coordinator.tail()}`));
      });
    });
    try {
      await ready;
    } catch (error) {
      await coordinator.kill('SIGKILL').catch(() => undefined);
      throw error;
    }
    return coordinator;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and resolves with how the process ended. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ProcessExit> {
    if (this.running) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.memberId} did not end within ${EXIT_WAIT_MS} ms of ${signal}`)), EXIT_WAIT_MS);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL if it is still there after the wait. */
  async stop(): Promise<ProcessExit> {
    try {
      return await this.kill('SIGTERM');
    } catch {
      return this.kill('SIGKILL');
    }
  }

  /** What it says about itself as a meta member (Cluster.Status, the member probe; one attempt). */
  async memberStatus(): Promise<{ member: MemberStatus; leaderId: string }> {
    const client = clusterClient(this.address);
    try {
      const metadata = new Metadata();
      metadata.set('concord-status-scope', 'member');
      const response = await new Promise<StatusResponse>((resolve, reject) => {
        client.status({}, metadata, { deadline: Date.now() + STATUS_DEADLINE_MS }, (error, answer) => (error === null ? resolve(answer) : reject(error)));
      });
      const member = response.meta?.members[0];
      if (member === undefined) throw new Error(`${this.memberId} answered Cluster.Status without its meta member`);
      return { member, leaderId: response.meta?.leaderId ?? '' };
    } finally {
      client.close();
    }
  }

  /** Whether a JSON log line of its output has this msg (among the last lines kept). */
  logged(msg: string): boolean {
    return this.output.some((line) => line.includes(`"msg":${JSON.stringify(msg)}`));
  }

  /** The last lines of its output, for failure messages. */
  tail(lines = 60): string {
    return this.output.slice(-lines).map((line) => `  ${this.memberId} | ${line}`).join('\n');
  }

  private note(line: string): void {
    this.output.push(line);
    if (this.output.length > KEPT_OUTPUT_LINES) this.output.splice(0, this.output.length - KEPT_OUTPUT_LINES);
  }
}

/**
 * Starts coordinator `memberId` with --join on a free port of 127.0.0.1, its data under the
 * cluster's data directory. Its --peers are the cluster's running coordinators (or `peers`).
 */
export async function startJoiningCoordinator(cluster: LocalCluster, memberId: string, options: JoinOptions = {}): Promise<JoiningCoordinator> {
  if (!cluster.metaGroup) throw new Error('startJoiningCoordinator: the cluster runs one coordinator with the config engine, which has no meta group to join');
  const names = cluster.coordinatorNames.filter((name) => (options.peers === undefined ? cluster.running(name) : options.peers.includes(name)));
  if (names.length === 0) throw new Error('startJoiningCoordinator: no running coordinator to list in --peers');
  // The cluster names each coordinator process by its member id (coordinator-0 …).
  const peers = names.map((name) => `${name}=${cluster.address(name)}`).join(',');
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port!}`;
  const argv = [
    '--engine', 'raft',
    '--member-id', memberId,
    '--listen', address,
    '--join',
    '--peers', peers,
    '--data-dir', join(cluster.dataDir, memberId),
    ...(options.args ?? []),
  ];
  return JoiningCoordinator.start(memberId, address, argv, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
}
