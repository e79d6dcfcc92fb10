// The server processes of the raft benchmark: three Concord shard replicas of one group and three
// etcd members, each started on 127.0.0.1 with free ports and a fresh data directory, and stopped
// (SIGTERM, then SIGKILL) however the benchmark ends.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverNodeFlags } from '@concord/runtime/node-flags';

const SHARD_MAIN = fileURLToPath(new URL('../../../services/shard/dist/main.js', import.meta.url));
export const ETCD_BINARY = '/usr/bin/etcd';
const STOP_GRACE_MS = 3000;

export interface ServerProcess {
  name: string;
  child: ChildProcess;
  /** Where its stdout and stderr go. */
  logFile: string;
}

/** Every process started, so that they can be killed synchronously on exit. */
export class ProcessSet {
  readonly processes: ServerProcess[] = [];

  start(name: string, command: string, args: readonly string[], logDir: string): ServerProcess {
    const logFile = join(logDir, `${name}.log`);
    const log = createWriteStream(logFile);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const started = { name, child, logFile };
    this.processes.push(started);
    return started;
  }

  pid(name: string): number | undefined {
    const found = this.processes.find((candidate) => candidate.name === name);
    return found !== undefined && running(found.child) ? found.child.pid : undefined;
  }

  /** SIGTERM to all, SIGKILL to whatever still runs after the grace period. */
  async stopAll(): Promise<void> {
    const stopping = this.processes.splice(0).filter((entry) => running(entry.child));
    await Promise.all(
      stopping.map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  /** For the synchronous exit path: kills whatever still runs. */
  killNow(): void {
    for (const { child } of this.processes) if (running(child)) child.kill('SIGKILL');
  }
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** `count` distinct ports the OS considers free on 127.0.0.1 right now. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** `count` shard replicas of group g1 (raft engine, fsync on, the default; a snapshot every `snapshotEvery` entries); returns their addresses by process name. */
export async function startConcordGroup(
  set: ProcessSet,
  dataDir: string,
  logDir: string,
  snapshotEvery: number,
  count: number,
  cpuProfDir?: string,
): Promise<{ addresses: Map<string, string>; metrics: Map<string, string> }> {
  if (!existsSync(SHARD_MAIN)) throw new Error(`${SHARD_MAIN} is missing: build first (npm run build)`);
  const ports = await freePorts(2 * count);
  const members = ports.slice(0, count).map((port, index) => ({ id: `g1-${index}`, address: `127.0.0.1:${port}`, metrics: `127.0.0.1:${ports[count + index]}` }));
  const peers = members.map(({ id, address }) => `${id}=${address}`).join(',');
  const addresses = new Map<string, string>();
  const metrics = new Map<string, string>();
  for (const { id, address, metrics: metricsAddress } of members) {
    // The server's node flags up front, so a replica need not restart itself to get them.
    const nodeArgs = [...serverNodeFlags(process.env)];
    if (cpuProfDir !== undefined) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=concord-${id}.cpuprofile`);
    const args = [...nodeArgs, SHARD_MAIN, '--engine', 'raft', '--group-id', 'g1', '--member-id', id, '--listen', address, '--peers', peers];
    args.push('--data-dir', join(dataDir, id), '--ring-groups', 'g1', '--metrics-listen', metricsAddress, '--snapshot-every', String(snapshotEvery));
    set.start(`concord-${id}`, process.execPath, args, logDir);
    addresses.set(`concord-${id}`, address);
    metrics.set(`concord-${id}`, metricsAddress);
  }
  return { addresses, metrics };
}

/** Installs etcd from the Debian package when it is missing and this process may; else explains. */
export function ensureEtcd(progress: (line: string) => void): void {
  if (existsSync(ETCD_BINARY)) return;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root) {
    throw new Error(`${ETCD_BINARY} is missing: install the Debian package etcd-server (sudo apt-get install -y etcd-server) and run again`);
  }
  progress('installing etcd-server with apt-get');
  const install = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (install.status !== 0 || !existsSync(ETCD_BINARY)) {
    throw new Error(`apt-get install -y etcd-server failed (exit ${String(install.status)}): ${install.stderr.slice(-500)}`);
  }
}

/** The version line of the etcd binary, e.g. "3.4.23". */
export function etcdVersion(): string {
  const out = spawnSync(ETCD_BINARY, ['--version'], { encoding: 'utf8' });
  return /etcd Version: (\S+)/.exec(out.stdout)?.[1] ?? 'unknown';
}

/** `count` etcd members on 127.0.0.1 (fsync on, etcd's default; --snapshot-count `snapshotCount`); returns their client URLs by process name. */
export async function startEtcdCluster(set: ProcessSet, dataDir: string, logDir: string, snapshotCount: number, count: number): Promise<Map<string, string>> {
  const ports = await freePorts(2 * count);
  const members = Array.from({ length: count }, (_, index) => ({
    name: `etcd-${index}`,
    client: `http://127.0.0.1:${ports[index * 2]!}`,
    peer: `http://127.0.0.1:${ports[index * 2 + 1]!}`,
  }));
  const initialCluster = members.map(({ name, peer }) => `${name}=${peer}`).join(',');
  const clients = new Map<string, string>();
  for (const { name, client, peer } of members) {
    set.start(
      name,
      ETCD_BINARY,
      [
        '--name', name,
        '--data-dir', join(dataDir, name),
        '--listen-client-urls', client,
        '--advertise-client-urls', client,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `bench-${process.pid}`,
        '--snapshot-count', String(snapshotCount),
        '--log-level', 'warn',
      ],
      logDir,
    );
    clients.set(name, client);
  }
  return clients;
}
