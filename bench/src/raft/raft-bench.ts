// `npm run bench -- raft`: one Concord shard group of three Raft replicas next to a three-member
// etcd cluster, under the same closed-loop load (puts at concurrency 1 and 64, linearizable gets
// at 64), each system measured with its own client against its leader. The systems run one after
// the other, never at the same time, so neither takes cores from the other. With --rounds N they
// take turns N times, each time on a fresh cluster, and the ratios are the medians of the rounds'
// ratios: a machine whose speed drifts between runs (a shared virtual machine) then skews both
// systems alike.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runClosedLoop, type ClosedLoopResult } from '../closed-loop.js';
import { CpuSampler, machineBusyShare, type CpuSample, type CpuUse } from '../cpu.js';
import { ERROR_RATE_WARNING, formatSummary, machineInfo, ratio, summarize, type LoopSummary, type MachineInfo } from '../report.js';
import { epochNow, mergeLoops, operationFor, shareOut, startClientThreads, type ClientThreads } from './client-threads.js';
import { ETCD_BINARY, ProcessSet, ensureEtcd, etcdVersion, startConcordGroup, startEtcdCluster } from './processes.js';
import { CLIENT_KINDS, KEY_BYTES, VALUE_BYTES, benchKey, connectTarget, sleep, type ClientKind, type Op, type System, type Target } from './targets.js';

const BUSY_SAMPLE_MS = 500;
const BUSY_WARNING = 0.2;
const OTHER_CORES_WARNING = 0.2;

/** Log entries between snapshots on both sides unless --snapshot-every says otherwise: Concord's own default. */
const DEFAULT_SNAPSHOT_EVERY = 10_000;

const USAGE = `Usage: npm run bench -- raft [flags]

A Concord shard group (3 Raft replicas, or --members) next to an etcd cluster of as many members, fsync on, same
load: puts of ${KEY_BYTES}-byte keys and ${VALUE_BYTES}-byte values at concurrency 1 and 64, linearizable gets at 64.
Needs ${ETCD_BINARY} (Debian package etcd-server; installed with apt-get when running as root).

  --duration <s>      measured seconds per scenario (default 5)
  --warmup <s>        unrecorded seconds before each window (default 1)
  --read-keys <n>     keys written before the get scenario (default 4096)
  --deadline-ms <ms>  deadline of every request (default 5000)
  --snapshot-every <n> log entries between snapshots, for both systems alike: Concord's
                      --snapshot-every, etcd's --snapshot-count (default 10000, Concord's default
                      and etcd's from 3.6 on; etcd 3.4 ships with 100000)
  --systems <list>    concord,etcd (default both)
  --members <n>       members of each system's group: 3 (default), 5, or 1 (nothing replicated: the
                      leader, its own log and the client alone, a baseline for what replication adds)
  --cpu-prof-dir <dir> write a V8 CPU profile of every Concord replica to <dir> when it stops
  --scenarios <list>  run only these of put-c1,put-c64,get-c64 (default all), or also put-c16,
                      put-c256 (not run by default: how throughput grows with requests in flight)
  --rounds <n>        let the systems take turns n times, fresh clusters each time, order
                      alternating (default 1); ratios are the medians of the rounds' ratios
  --client-threads <n> share each scenario's requests in flight between n threads of the load
                      generator, each with its own client, connection and heap (default 1: one
                      thread, one connection)
  --client <kind>     what makes the requests: grpc-js (default: each system's own Node client,
                      the generated Concord stub and the etcd3 package) or h2 (the same lean unary
                      gRPC calls on node:http2 for both: less of the load generator in the figures)
`;

interface Options {
  durationS: number;
  warmupS: number;
  readKeys: number;
  deadlineMs: number;
  snapshotEvery: number;
  systems: System[];
  members: number;
  cpuProfDir: string | undefined;
  scenarios: string[] | undefined;
  rounds: number;
  clientThreads: number;
  client: ClientKind;
}

interface Scenario {
  id: string;
  op: Op;
  concurrency: number;
  /** Run only when --scenarios names it. */
  extra?: boolean;
}

const SCENARIOS: readonly Scenario[] = [
  { id: 'put-c1', op: 'put', concurrency: 1 },
  { id: 'put-c16', op: 'put', concurrency: 16, extra: true },
  { id: 'put-c64', op: 'put', concurrency: 64 },
  { id: 'put-c256', op: 'put', concurrency: 256, extra: true },
  { id: 'get-c64', op: 'get', concurrency: 64 },
];

interface Result extends LoopSummary {
  id: string;
  /** 1-based; with --rounds, which turn of its system this was. */
  round: number;
  system: System;
  op: Op;
  concurrency: number;
  cpu: Record<string, CpuUse>;
  /** Concord only: WAL appends (one fsync each) per second and entries per append, by role. */
  wal_appends?: Record<string, WalAppendUse>;
  leader_changed?: string;
  /** With --client-threads above 1: the successful requests of the window, by thread (main thread first). */
  ops_by_thread?: number[];
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Options | undefined {
  const options: Options = {
    durationS: 5,
    warmupS: 1,
    readKeys: 4096,
    deadlineMs: 5000,
    snapshotEvery: DEFAULT_SNAPSHOT_EVERY,
    systems: ['concord', 'etcd'],
    members: 3,
    cpuProfDir: undefined,
    scenarios: undefined,
    rounds: 1,
    clientThreads: 1,
    client: 'grpc-js',
  };
  const number = (flag: string, raw: string | undefined, min: number): number => {
    const value = Number(raw);
    if (raw === undefined || !Number.isFinite(value) || value < min) throw new UsageError(`${flag}: expected a number ≥ ${min}, got ${String(raw)}`);
    return value;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === '--help' || flag === '-h') return undefined;
    const [name, inline] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (name) {
      case '--duration':
        options.durationS = number(name, value(), 0.1);
        break;
      case '--warmup':
        options.warmupS = number(name, value(), 0);
        break;
      case '--read-keys':
        options.readKeys = Math.floor(number(name, value(), 1));
        break;
      case '--deadline-ms':
        options.deadlineMs = number(name, value(), 1);
        break;
      case '--snapshot-every': {
        const every = number(name, value(), 1);
        if (!Number.isInteger(every)) throw new UsageError(`--snapshot-every: expected a whole number of entries, got ${every}`);
        options.snapshotEvery = every;
        break;
      }
      case '--systems': {
        const systems = (value() ?? '').split(',').filter((s) => s !== '');
        for (const system of systems) if (system !== 'concord' && system !== 'etcd') throw new UsageError(`--systems: unknown system ${JSON.stringify(system)}`);
        if (systems.length === 0) throw new UsageError('--systems: name at least one of concord, etcd');
        options.systems = systems as System[];
        break;
      }
      case '--members': {
        const members = number(name, value(), 1);
        if (![1, 3, 5].includes(members)) throw new UsageError(`--members: expected 1, 3 or 5, got ${members}`);
        options.members = members;
        break;
      }
      case '--cpu-prof-dir': {
        const dir = value();
        if (dir === undefined || dir.trim() === '') throw new UsageError('--cpu-prof-dir: expected a directory');
        options.cpuProfDir = resolve(dir);
        break;
      }
      case '--scenarios': {
        const ids = (value() ?? '').split(',').filter((s) => s !== '');
        for (const id of ids) if (!SCENARIOS.some((scenario) => scenario.id === id)) throw new UsageError(`--scenarios: unknown scenario ${JSON.stringify(id)}`);
        if (ids.length === 0) throw new UsageError('--scenarios: name at least one of put-c1, put-c64, get-c64');
        options.scenarios = ids;
        break;
      }
      case '--client-threads': {
        const threads = number(name, value(), 1);
        if (!Number.isInteger(threads) || threads > 8) throw new UsageError(`--client-threads: expected a whole number from 1 to 8, got ${threads}`);
        options.clientThreads = threads;
        break;
      }
      case '--client': {
        const kind = value();
        if (!CLIENT_KINDS.includes(kind as ClientKind)) throw new UsageError(`--client: expected one of ${CLIENT_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
        options.client = kind as ClientKind;
        break;
      }
      case '--rounds': {
        const rounds = number(name, value(), 1);
        if (!Number.isInteger(rounds) || rounds > 20) throw new UsageError(`--rounds: expected a whole number from 1 to 20, got ${rounds}`);
        options.rounds = rounds;
        break;
      }
      default:
        throw new UsageError(`unknown flag ${JSON.stringify(flag)}`);
    }
  }
  return options;
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

export async function runRaftBench(argv: readonly string[]): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench raft: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (options.systems.includes('etcd')) ensureEtcd(progress);

  const set = new ProcessSet();
  const root = await mkdtemp(join(tmpdir(), 'concord-bench-raft-'));
  const onExit = (): void => {
    set.killNow();
    rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  };
  process.on('exit', onExit);
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping every process started`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.once(signal, onSignal);
  try {
    return await measure(options, set, root);
  } finally {
    await set.stopAll();
    await rm(root, { recursive: true, force: true, maxRetries: 3 });
    process.off('exit', onExit);
    for (const signal of signals) process.off(signal, onSignal);
  }
}

async function measure(options: Options, set: ProcessSet, root: string): Promise<number> {
  const machine: MachineInfo = machineInfo(await machineBusyShare(BUSY_SAMPLE_MS));
  if (machine.cpu_busy_before_start > BUSY_WARNING) {
    progress(`WARNING other work kept ${Math.round(machine.cpu_busy_before_start * 100)}% of the cores busy before the run: figures will be low and noisy`);
  }
  const value = randomBytes(VALUE_BYTES);
  const results: Result[] = [];
  const scenarios = SCENARIOS.filter((scenario) => (options.scenarios === undefined ? scenario.extra !== true : options.scenarios.includes(scenario.id)));

  for (let round = 1; round <= options.rounds; round++) {
    // Alternating the order keeps a machine that speeds up or slows down from favouring one system.
    const systems = round % 2 === 1 ? options.systems : [...options.systems].reverse();
    for (const system of systems) {
      if (options.rounds > 1) progress(`round ${round} of ${options.rounds}: ${system}`);
      results.push(...(await measureSystem(options, set, join(root, `${system}-${round}`), root, system, round, scenarios, value)));
    }
  }
  return report(options, machine, results);
}

/** Starts one system on a fresh data folder, runs every scenario against it and stops it. */
async function measureSystem(
  options: Options,
  set: ProcessSet,
  dataDir: string,
  root: string,
  system: System,
  round: number,
  scenarios: readonly Scenario[],
  value: Buffer,
): Promise<Result[]> {
  const results: Result[] = [];
  let endpoints: ReadonlyMap<string, string>;
  let metricsAddresses: ReadonlyMap<string, string> | undefined;
  if (system === 'concord') {
    const { addresses, metrics } = await startConcordGroup(set, dataDir, root, options.snapshotEvery, options.members, options.cpuProfDir);
    metricsAddresses = metrics;
    endpoints = addresses;
    progress(`concord: ${options.members} shard replica(s) of g1 on ${[...addresses.values()].join(', ')}`);
  } else {
    endpoints = await startEtcdCluster(set, dataDir, root, options.snapshotEvery, options.members);
    progress(`etcd ${etcdVersion()}: ${options.members} member(s), clients on ${[...endpoints.values()].join(', ')}`);
  }
  const names = [...endpoints.keys()];
  const target = await connectTarget(system, endpoints, options.deadlineMs, options.client);
  try {
    const leader = await target.leader();
    if (scenarios.some((scenario) => scenario.op === 'get')) {
      progress(`${system}: leader ${leader}; writing ${options.readKeys} keys for the gets`);
      await writeReadKeys(target, options.readKeys, value);
    } else {
      progress(`${system}: leader ${leader}`);
    }
    for (const [scenarioIndex, scenario] of scenarios.entries()) {
      const leaderBefore = await target.leader();
      const sampler = new CpuSampler(
        names.map((name) => ({ role: name === leaderBefore ? `${system}_leader` : `${system}_followers`, pid: set.pid(name) })),
      );
      // Puts write keys no other thread or scenario writes: w<scenario>t<thread>-<n>.
      const keyPrefix = (thread: number): string => `w${scenarioIndex}t${thread}-`;
      const shares = shareOut(scenario.concurrency, options.clientThreads);
      let threads: ClientThreads | undefined;
      if (shares.length > 1) {
        threads = await startClientThreads(
          shares.slice(1).map((concurrency, i) => ({
            system,
            endpoints: [...endpoints],
            deadlineMs: options.deadlineMs,
            client: options.client,
            op: scenario.op,
            concurrency,
            keyPrefix: keyPrefix(i + 1),
            readKeys: options.readKeys,
            value,
            warmupMs: options.warmupS * 1000,
            durationMs: options.durationS * 1000,
          })),
        );
      }
      let windowStart: CpuSample | undefined;
      let windowEnd: CpuSample | undefined;
      let batchesAtStart: Promise<Map<string, WalAppends>> | undefined;
      let batchesAtEnd: Promise<Map<string, WalAppends>> | undefined;
      // Every thread's window opens at the same moment, shortly after the threads are told to go.
      const startAt = epochNow() + (threads === undefined ? 0 : 50);
      const others = threads?.go(startAt) ?? Promise.resolve([]);
      // Awaited once the main thread's own loop ends; a thread failing sooner must not go unhandled meanwhile.
      others.catch(() => undefined);
      let own: ClosedLoopResult;
      let opsByThread: number[] | undefined;
      try {
        own = await runClosedLoop({
          concurrency: shares[0]!,
          warmupMs: startAt - epochNow() + options.warmupS * 1000,
          durationMs: options.durationS * 1000,
          operation: operationFor(target, scenario.op, keyPrefix(0), options.readKeys, value),
          onWindowStart: () => {
            windowStart = sampler.sample();
            if (metricsAddresses !== undefined) batchesAtStart = scrapeWalAppends(metricsAddresses);
          },
          onWindowEnd: () => {
            windowEnd = sampler.sample();
            if (metricsAddresses !== undefined) batchesAtEnd = scrapeWalAppends(metricsAddresses);
          },
          });
        const threadLoops = await others;
        if (threadLoops.length > 0) opsByThread = [own.ops, ...threadLoops.map((loop) => loop.ops)];
        own = mergeLoops(own, threadLoops);
      } finally {
        await threads?.terminate();
      }
      const summary = summarize(own);
      const cpu = windowStart !== undefined && windowEnd !== undefined ? CpuSampler.use(windowStart, windowEnd, summary.ops_per_sec) : {};
      const result: Result = { id: `${system}-${scenario.id}`, round, system, op: scenario.op, concurrency: scenario.concurrency, ...summary, cpu };
      if (opsByThread !== undefined) result.ops_by_thread = opsByThread;
      if (batchesAtStart !== undefined && batchesAtEnd !== undefined) {
        result.wal_appends = walAppendsInWindow(await batchesAtStart, await batchesAtEnd, leaderBefore, options.durationS);
      }
      const leaderAfter = await target.leader().catch(() => 'unknown');
      if (leaderAfter !== leaderBefore) result.leader_changed = `${leaderBefore} → ${leaderAfter}`;
      results.push(result);
      const all = cpu['all'];
      progress(`${result.id.padEnd(16)} ${formatSummary(summary)}${all === undefined ? '' : `  cpu ${all.cores} cores (+${cpu['other']?.cores ?? 0} other)`}`);
    }
  } finally {
    target.close();
    await set.stopAll();
  }
  return results;
}

/** Prints the JSON report: every result, the warnings, and Concord's figures as ratios of etcd's. */
async function report(options: Options, machine: MachineInfo, results: Result[]): Promise<number> {
  const warnings: string[] = [];
  if (machine.cpu_busy_before_start > BUSY_WARNING) warnings.push(`other work kept ${Math.round(machine.cpu_busy_before_start * 100)}% of the cores busy before the run`);
  for (const result of results) {
    const id = options.rounds > 1 ? `${result.id} (round ${result.round})` : result.id;
    if (result.error_rate > ERROR_RATE_WARNING) warnings.push(`${id}: ${(result.error_rate * 100).toFixed(2)}% of requests failed; first: ${result.first_error ?? '?'}`);
    if (result.leader_changed !== undefined) warnings.push(`${id}: the leader changed (${result.leader_changed})`);
    const other = result.cpu['other']?.cores ?? 0;
    if (other > OTHER_CORES_WARNING) warnings.push(`${id}: other processes used ${other} cores during the window; the figures are low`);
  }
  for (const warning of warnings) progress(`WARNING ${warning}`);

  const ratiosByRound = Array.from({ length: options.rounds }, (_, index) => roundRatios(results.filter((r) => r.round === index + 1)));
  const ratios = medianRatios(ratiosByRound);
  const report = {
    bench: 'raft',
    machine,
    config: {
      date: new Date().toISOString(),
      loop: 'closed',
      duration_s: options.durationS,
      warmup_s: options.warmupS,
      key_bytes: KEY_BYTES,
      value_bytes: VALUE_BYTES,
      read_keys: options.readKeys,
      deadline_ms: options.deadlineMs,
      snapshot_every: options.snapshotEvery,
      rounds: options.rounds,
      replicas: options.members,
      fsync: true,
      get_consistency: 'linearizable',
      client_threads: options.clientThreads,
      client: options.client,
      concord: `one shard group (raft engine), ${options.client === 'h2' ? 'lean unary gRPC calls on node:http2' : 'generated ShardClient'} to the leader, one HTTP/2 connection per client thread`,
      etcd: options.systems.includes('etcd')
        ? `etcd ${etcdVersion()}, ${options.client === 'h2' ? 'lean unary gRPC calls on node:http2' : 'etcd3 npm client'} to the leader, one connection per client thread`
        : null,
    },
    results,
    ratios,
    ...(options.rounds > 1 ? { ratios_by_round: ratiosByRound } : {}),
    warnings,
  };
  await new Promise<void>((resolve, reject) => {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`, (error) => (error ? reject(error) : resolve()));
  });
  return 0;
}

/** Concord's ops/s, p50 and p99 as multiples of etcd's, per scenario both ran, from one round's results. */
export function roundRatios(results: readonly Pick<Result, 'id' | 'ops_per_sec' | 'p50_ms' | 'p99_ms'>[]): Record<string, number | undefined> {
  const ratios: Record<string, number | undefined> = {};
  for (const scenario of SCENARIOS) {
    const concord = results.find((r) => r.id === `concord-${scenario.id}`);
    const etcd = results.find((r) => r.id === `etcd-${scenario.id}`);
    if (concord === undefined && etcd === undefined) continue;
    const key = scenario.id.replace('-', '_');
    ratios[`${key}_ops_per_sec_concord_vs_etcd`] = ratio(concord?.ops_per_sec, etcd?.ops_per_sec);
    ratios[`${key}_p50_concord_vs_etcd`] = ratio(concord?.p50_ms, etcd?.p50_ms);
    ratios[`${key}_p99_concord_vs_etcd`] = ratio(concord?.p99_ms, etcd?.p99_ms);
  }
  return ratios;
}

/** Per key, the median of the rounds' ratios (the mean of the middle two for an even count); undefined when no round has it. */
export function medianRatios(rounds: readonly Record<string, number | undefined>[]): Record<string, number | undefined> {
  const keys = [...new Set(rounds.flatMap((round) => Object.keys(round)))];
  const medians: Record<string, number | undefined> = {};
  for (const key of keys) {
    const values = rounds.map((round) => round[key]).filter((value): value is number => value !== undefined).sort((a, b) => a - b);
    if (values.length === 0) {
      medians[key] = undefined;
      continue;
    }
    const middle = Math.floor(values.length / 2);
    const median = values.length % 2 === 1 ? values[middle]! : (values[middle - 1]! + values[middle]!) / 2;
    medians[key] = Number(median.toPrecision(3));
  }
  return medians;
}

async function writeReadKeys(target: Target, count: number, value: Buffer): Promise<void> {
  let next = 0;
  const writer = async (): Promise<void> => {
    for (let index = next++; index < count; index = next++) {
      for (let attempt = 1; ; attempt++) {
        try {
          await target.put(benchKey('r', index), value);
          break;
        } catch (error) {
          if (attempt >= 5) throw error;
          await sleep(100 * attempt);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, writer));
}

/** Totals of a replica's `concord_raft_append_batch_entries{kind="persist"}` histogram: WAL appends with entries, and their entries. */
export interface WalAppends {
  appends: number;
  entries: number;
  /** concord_raft_fsync_seconds: WAL appends timed (write + fdatasync) and their total seconds. */
  timed: number;
  seconds: number;
}

async function scrapeWalAppends(metrics: ReadonlyMap<string, string>): Promise<Map<string, WalAppends>> {
  const totals = new Map<string, WalAppends>();
  await Promise.all(
    [...metrics].map(async ([name, address]) => {
      const text = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(2000) }).then((response) => response.text());
      const total: WalAppends = { appends: 0, entries: 0, timed: 0, seconds: 0 };
      for (const line of text.split('\n')) {
        if (line.startsWith('concord_raft_fsync_seconds_count')) total.timed += Number(line.slice(line.lastIndexOf(' ') + 1));
        if (line.startsWith('concord_raft_fsync_seconds_sum')) total.seconds += Number(line.slice(line.lastIndexOf(' ') + 1));
        if (!line.startsWith('concord_raft_append_batch_entries_') || !line.includes('kind="persist"')) continue;
        const value = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (line.startsWith('concord_raft_append_batch_entries_count')) total.appends += value;
        else if (line.startsWith('concord_raft_append_batch_entries_sum')) total.entries += value;
      }
      totals.set(name, total);
    }),
  );
  return totals;
}

export function walAppendsInWindow(
  start: ReadonlyMap<string, WalAppends>,
  end: ReadonlyMap<string, WalAppends>,
  leader: string,
  durationS: number,
): Record<string, WalAppendUse> {
  const zero = (): WalAppends => ({ appends: 0, entries: 0, timed: 0, seconds: 0 });
  const roles: Record<string, WalAppends> = { leader: zero(), followers: zero() };
  for (const [name, after] of end) {
    const before = start.get(name) ?? zero();
    const role = roles[name === leader ? 'leader' : 'followers']!;
    role.appends += after.appends - before.appends;
    role.entries += after.entries - before.entries;
    role.timed += after.timed - before.timed;
    role.seconds += after.seconds - before.seconds;
  }
  const use = (role: WalAppends, members: number): WalAppendUse => ({
    per_sec: Math.round(role.appends / durationS / members),
    entries_per_append: round2(role.entries / Math.max(1, role.appends)),
    ms_per_append: round2((1000 * role.seconds) / Math.max(1, role.timed)),
  });
  return { leader: use(roles['leader']!, 1), followers: use(roles['followers']!, Math.max(1, end.size - 1)) };
}

/** Per member of the role: WAL appends with entries per second, entries in each, and the mean write + fdatasync time. */
export interface WalAppendUse {
  per_sec: number;
  entries_per_append: number;
  ms_per_append: number;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
