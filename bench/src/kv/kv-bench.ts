// `npm run bench -- kv`: the echo floor, then Concord put and linearizable get through the
// coordinator and directly to the shard leaders, each scenario a closed loop of fixed duration.
// Every process it starts is stopped when it ends, also on an error or Ctrl-C.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { ConcordClient } from '@concord/client';
import { startLocalCluster, type LocalCluster } from '@concord/tests/harness';
import { runClosedLoop, type ClosedLoopOptions } from '../closed-loop.js';
import { CpuSampler, machineBusyShare, type CpuSample, type CpuUse } from '../cpu.js';
import { EchoClient, startEchoServer, type EchoServerProcess } from '../echo.js';
import { ERROR_RATE_WARNING, formatSummary, machineInfo, ratio, summarize, type LoopSummary } from '../report.js';
import { KV_USAGE, UsageError, parseKvBenchArgs, type KvBenchOptions } from './options.js';
import { allScenarios, selectScenarios, type Scenario } from './scenarios.js';

/** The local cluster: three shard groups, fsync on (the shard default). */
const SHARD_GROUPS = ['g1', 'g2', 'g3'] as const;
const KEY_BYTES = 16;
const VALUE_BYTES = 256;
const ECHO_PAYLOAD_BYTES = 256;
/** Requests in flight while writing the keys the get scenarios read. */
const PRELOAD_CONCURRENCY = 64;
/** Attempts per key when writing the keys the get scenarios read. */
const PRELOAD_ATTEMPTS = 3;
/** How long the machine is watched for other work before the run. */
const BUSY_SAMPLE_MS = 1000;
/** Share of the cores busy before the run above which it warns: the cores are not ours alone. */
const BUSY_WARNING = 0.2;
/** CPU used by processes outside the run, in cores, above which a scenario's figures are flagged. */
const OTHER_CORES_WARNING = 0.2;
/** How long to wait for a group's leader before and after a scenario (a liveness bound). */
const LEADER_WAIT_MS = 15_000;
/** Startup (cluster, echo server) and shutdown, for the time estimate printed at the start. */
const FIXED_OVERHEAD_S = 10;

export interface ScenarioResult extends LoopSummary {
  id: string;
  target: 'echo' | 'concord';
  routing: 'coordinator' | 'direct' | null;
  op: 'echo' | 'put' | 'get';
  concurrency: number;
  /**
   * CPU burned during the window by role: bench_client, echo_server, coordinator, shard_leaders and
   * shard_followers (shards with the single engine), all (their sum), other (the rest of the machine).
   */
  cpu: Record<string, CpuUse>;
  /** Groups whose leader or term changed between the start and the end of the scenario. */
  leader_changes?: string[];
}

export interface KvBenchReport {
  bench: 'kv';
  machine: ReturnType<typeof machineInfo>;
  config: Record<string, unknown>;
  results: ScenarioResult[];
  ratios: Record<string, number>;
  warnings: string[];
}

const progress = (line: string): void => {
  process.stderr.write(`bench kv: ${line}\n`);
};

/** A 16-byte key: a one-letter namespace and 15 hex digits. */
function benchKey(namespace: 'r' | 'w', index: number): string {
  const key = `${namespace}${index.toString(16).padStart(KEY_BYTES - 1, '0')}`;
  if (key.length !== KEY_BYTES) throw new Error(`key index ${index} does not fit in ${KEY_BYTES} bytes`);
  return key;
}

/** What the process must undo if it ends early: kept so a synchronous 'exit' handler can do it. */
class Leftovers {
  echo: EchoServerProcess | undefined;
  cluster: LocalCluster | undefined;
  dataDir: string | undefined;

  /** Synchronous last resort: SIGKILL whatever still runs, remove the data directory. */
  killNow(): void {
    this.echo?.killNow();
    const cluster = this.cluster;
    if (cluster !== undefined) {
      for (const name of cluster.processNames) {
        const pid = cluster.pid(name);
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    if (this.dataDir !== undefined) rmSync(this.dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
}

/** Runs the benchmark; resolves with the process exit code. */
export async function runKvBench(argv: readonly string[]): Promise<number> {
  let options: KvBenchOptions | undefined;
  let scenarios: Scenario[];
  try {
    options = parseKvBenchArgs(argv);
    if (options === undefined) {
      process.stdout.write(KV_USAGE);
      return 0;
    }
    const { selected, unmatched } = selectScenarios(allScenarios(options.concurrencies), options.scenarioFilter);
    if (unmatched.length > 0) throw new UsageError(`--scenarios: no scenario matches ${unmatched.map((term) => JSON.stringify(term)).join(', ')}`);
    scenarios = selected;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench kv: ${error.message}\n\n${KV_USAGE}`);
    return 2;
  }

  const leftovers = new Leftovers();
  const onExit = (): void => leftovers.killNow();
  process.on('exit', onExit);
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping every process started`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.once(signal, onSignal);

  try {
    return await measure(options, scenarios, leftovers);
  } finally {
    await stopAll(leftovers);
    process.off('exit', onExit);
    for (const signal of signals) process.off(signal, onSignal);
  }
}

async function stopAll(leftovers: Leftovers): Promise<void> {
  const { echo, cluster, dataDir } = leftovers;
  await echo?.stop();
  leftovers.echo = undefined;
  await cluster?.stop();
  leftovers.cluster = undefined;
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true, maxRetries: 3 });
  leftovers.dataDir = undefined;
}

async function measure(options: KvBenchOptions, scenarios: readonly Scenario[], leftovers: Leftovers): Promise<number> {
  // Before any load of ours, so it shows only what else the machine is doing.
  const machine = machineInfo(await machineBusyShare(BUSY_SAMPLE_MS));
  if (machine.cpu_busy_before_start > BUSY_WARNING) {
    const percent = Math.round(machine.cpu_busy_before_start * 100);
    progress(`WARNING other work kept ${percent}% of the cores busy before the run: it shares them, figures will be low and noisy`);
  }
  const estimateS = Math.ceil(scenarios.length * (options.warmupS + options.durationS) + FIXED_OVERHEAD_S);
  progress(`${scenarios.length} scenarios × (${options.warmupS} s warm-up + ${options.durationS} s measured), about ${estimateS} s`);

  const serverEnv = { ...process.env };
  if (options.cpuProfDir !== undefined) {
    await mkdir(options.cpuProfDir, { recursive: true });
    serverEnv['NODE_OPTIONS'] = `${serverEnv['NODE_OPTIONS'] ?? ''} --cpu-prof --cpu-prof-dir=${options.cpuProfDir}`.trim();
  }

  const results: ScenarioResult[] = [];
  const loopTiming = { warmupMs: options.warmupS * 1000, durationMs: options.durationS * 1000 };
  /** Runs one scenario's closed loop, sampling the CPU time of `sampler`'s processes over its window. */
  const run = async (scenario: Scenario, sampler: CpuSampler, operation: ClosedLoopOptions['operation']): Promise<ScenarioResult> => {
    let windowStart: CpuSample | undefined;
    let windowEnd: CpuSample | undefined;
    const result = await runClosedLoop({
      ...loopTiming,
      concurrency: scenario.concurrency,
      operation,
      onWindowStart: () => (windowStart = sampler.sample()),
      onWindowEnd: () => (windowEnd = sampler.sample()),
    });
    const summary = summarize(result);
    const cpu = windowStart !== undefined && windowEnd !== undefined ? CpuSampler.use(windowStart, windowEnd, summary.ops_per_sec) : {};
    const { id, target, routing, op, concurrency } = scenario;
    results.push({ id, target, routing, op, concurrency, ...summary, cpu });
    const all = cpu['all'];
    const other = cpu['other'];
    const cores = all === undefined ? '' : `  cpu ${all.cores} cores${other === undefined ? '' : ` (+${other.cores} other)`}`;
    progress(`[${results.length}/${scenarios.length}] ${id.padEnd(20)} ${formatSummary(summary)}${cores}`);
    return results[results.length - 1]!;
  };

  const echoScenarios = scenarios.filter((scenario) => scenario.target === 'echo');
  if (echoScenarios.length > 0) {
    leftovers.echo = await startEchoServer(10_000, serverEnv);
    progress(`echo server serving on ${leftovers.echo.address} (pid ${leftovers.echo.pid})`);
    const payload = randomBytes(ECHO_PAYLOAD_BYTES);
    const sampler = new CpuSampler([{ role: 'echo_server', pid: leftovers.echo.pid }]);
    for (const scenario of echoScenarios) {
      const client = new EchoClient(leftovers.echo.address);
      try {
        await run(scenario, sampler, async () => {
          const answer = await client.echo(payload, new Date(Date.now() + options.deadlineMs));
          if (answer.length !== payload.length) throw new Error(`echo answered ${answer.length} bytes, sent ${payload.length}`);
        });
      } finally {
        client.close();
      }
    }
    await leftovers.echo.stop();
    leftovers.echo = undefined;
  }

  const concordScenarios = scenarios.filter((scenario) => scenario.target === 'concord');
  let clusterShape: { engine: string; replicas_per_group: number; coordinators: number } | undefined;
  let coordinatorCalled: string | undefined;
  if (concordScenarios.length > 0) {
    progress(`starting a local cluster: ${SHARD_GROUPS.length} shard groups (${options.engine}, fsync on) and a coordinator`);
    // The cluster harness gives the processes it starts this process's environment.
    const ownNodeOptions = process.env['NODE_OPTIONS'];
    if (options.cpuProfDir !== undefined) process.env['NODE_OPTIONS'] = serverEnv['NODE_OPTIONS'];
    let cluster: LocalCluster;
    try {
      cluster = await startLocalCluster({ groups: SHARD_GROUPS, engine: options.engine });
    } finally {
      if (ownNodeOptions === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = ownNodeOptions;
    }
    leftovers.cluster = cluster;
    // stop() removes it; kept here for the synchronous exit path.
    leftovers.dataDir = cluster.dataDir;
    const shardProcesses = new Set(cluster.groups.flatMap((group) => cluster.shardNames(group)));
    clusterShape = {
      engine: cluster.engine,
      replicas_per_group: cluster.shardNames(SHARD_GROUPS[0]).length,
      coordinators: cluster.processNames.filter((name) => !shardProcesses.has(name)).length,
    };
    const pids = cluster.processNames.map((name) => `${name} ${cluster.pid(name)}`).join(', ');
    // The client calls the meta group's leader, which serves every call itself: through a follower
    // each call would take one more hop (forwarded to the leader), and which coordinator leads
    // differs from run to run (docs/performance.md).
    const coordinator = cluster.metaGroup ? await cluster.metaLeader() : { name: cluster.coordinatorNames[0]!, address: cluster.coordinatorAddress };
    coordinatorCalled = coordinator.name;
    progress(`cluster serving: the client calls coordinator ${coordinator.name} at ${coordinator.address}; data in ${cluster.dataDir}; pids ${pids}`);

    const value = randomBytes(VALUE_BYTES);
    let nextWriteKey = 0;
    let nextReadKey = 0;
    let readKeysWritten = false;
    for (const scenario of concordScenarios) {
      if (scenario.op === 'get' && !readKeysWritten) {
        await writeReadKeys(coordinator.address, options, value);
        readKeysWritten = true;
      }
      const leadersBefore = await leadership(cluster);
      const sampler = new CpuSampler(
        cluster.processNames.map((name) => ({ role: cpuRole(cluster, name, leadersBefore), pid: cluster.pid(name) })),
      );
      // Connecting (and loading the ring) gets the SDK's default deadline; requests get --deadline-ms.
      const client = await ConcordClient.connect({ address: coordinator.address, routing: scenario.routing });
      const call = { deadlineMs: options.deadlineMs };
      try {
        const operation =
          scenario.op === 'put'
            ? () => client.put(benchKey('w', nextWriteKey++), value, call)
            : async () => {
                const key = benchKey('r', nextReadKey++ % options.readKeys);
                const found = await client.get(key, call);
                if (!found.found || found.value.length !== VALUE_BYTES) throw new Error(`get ${key}: a key written before the run is missing`);
              };
        const result = await run(scenario, sampler, operation);
        const changes = leadershipChanges(leadersBefore, await leadership(cluster));
        if (changes.length > 0) {
          result.leader_changes = changes;
          progress(`    leadership changed during ${scenario.id}: ${changes.join('; ')}`);
        }
      } finally {
        client.close();
      }
    }
    if (options.cpuProfDir !== undefined) progress(`CPU profiles of ${pids} go to ${options.cpuProfDir} as the processes stop`);
  }

  const warnings: string[] = [];
  if (machine.cpu_busy_before_start > BUSY_WARNING) {
    warnings.push(`other work kept ${Math.round(machine.cpu_busy_before_start * 100)}% of the cores busy before the run`);
  }
  for (const result of results) {
    if (result.error_rate > ERROR_RATE_WARNING) {
      const kinds = Object.entries(result.error_kinds ?? {}).map(([kind, count]) => `${count} ${kind}`).join(', ');
      warnings.push(`${result.id}: ${(result.error_rate * 100).toFixed(2)}% of requests failed (${kinds}); first: ${result.first_error ?? '?'}`);
    }
    if (result.leader_changes !== undefined) warnings.push(`${result.id}: leadership changed during the scenario (${result.leader_changes.join('; ')})`);
    const other = result.cpu['other']?.cores ?? 0;
    if (other > OTHER_CORES_WARNING) warnings.push(`${result.id}: other processes used ${other} cores during the window; the figures are low`);
  }
  for (const warning of warnings) progress(`WARNING ${warning}`);

  const report: KvBenchReport = {
    bench: 'kv',
    machine,
    config: {
      date: new Date().toISOString(),
      loop: 'closed',
      duration_s: options.durationS,
      warmup_s: options.warmupS,
      concurrency: options.concurrencies,
      scenarios: scenarios.map((scenario) => scenario.id),
      key_bytes: KEY_BYTES,
      value_bytes: VALUE_BYTES,
      echo_payload_bytes: ECHO_PAYLOAD_BYTES,
      shard_groups: SHARD_GROUPS.length,
      engine: clusterShape?.engine ?? options.engine,
      replicas_per_group: clusterShape?.replicas_per_group ?? null,
      coordinators: clusterShape?.coordinators ?? null,
      coordinator_called: coordinatorCalled ?? null,
      fsync: true,
      get_consistency: 'linearizable',
      read_keys: options.readKeys,
      deadline_ms: options.deadlineMs,
      cpu_prof_dir: options.cpuProfDir ?? null,
    },
    results,
    ratios: ratios(results),
    warnings,
  };
  await new Promise<void>((resolve, reject) => {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`, (error) => (error ? reject(error) : resolve()));
  });
  return 0;
}

/**
 * Writes the keys the get scenarios read, directly to the shard leaders, each with a few
 * attempts: a get scenario that finds its keys missing would measure nothing useful.
 */
async function writeReadKeys(address: string, options: KvBenchOptions, value: Buffer): Promise<void> {
  progress(`writing ${options.readKeys} keys for the get scenarios`);
  const client = await ConcordClient.connect({ address, routing: 'direct' });
  let next = 0;
  const writer = async (): Promise<void> => {
    for (let index = next++; index < options.readKeys; index = next++) {
      for (let attempt = 1; ; attempt++) {
        try {
          await client.put(benchKey('r', index), value);
          break;
        } catch (error) {
          if (attempt >= PRELOAD_ATTEMPTS) throw error;
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(PRELOAD_CONCURRENCY, options.readKeys) }, writer));
  } finally {
    client.close();
  }
}

/**
 * Concord against the echo floor at the same concurrency (throughput as a fraction of the
 * floor's, median latency as a multiple of it), and direct routing against the coordinator.
 */
function ratios(results: readonly ScenarioResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  const find = (routing: ScenarioResult['routing'], op: ScenarioResult['op'], concurrency: number) =>
    results.find((result) => result.routing === routing && result.op === op && result.concurrency === concurrency);
  const set = (name: string, value: number | undefined): void => {
    if (value !== undefined) out[name] = value;
  };
  for (const result of results) {
    if (result.target !== 'concord') continue;
    const prefix = `${result.routing}_${result.op}_c${result.concurrency}`;
    const echo = find(null, 'echo', result.concurrency);
    set(`${prefix}_ops_per_sec_vs_echo`, ratio(result.ops_per_sec, echo?.ops_per_sec));
    set(`${prefix}_p50_vs_echo`, ratio(result.p50_ms, echo?.p50_ms));
    if (result.routing === 'direct') {
      const viaCoordinator = find('coordinator', result.op, result.concurrency);
      set(`direct_vs_coordinator_${result.op}_c${result.concurrency}_ops_per_sec`, ratio(result.ops_per_sec, viaCoordinator?.ops_per_sec));
    }
  }
  return out;
}

/** Leader process name and term of every group; with the single engine each group's one process. */
async function leadership(cluster: LocalCluster): Promise<Map<string, { name: string; term: number }>> {
  const leaders = new Map<string, { name: string; term: number }>();
  for (const group of cluster.groups) {
    if (cluster.engine === 'single') {
      leaders.set(group, { name: cluster.shardNames(group)[0]!, term: 0 });
    } else {
      const leader = await cluster.leaderOf(group, { timeoutMs: LEADER_WAIT_MS });
      leaders.set(group, { name: leader.name, term: leader.status.term });
    }
  }
  return leaders;
}

/** "g2: shard-g2-0 (term 2) -> shard-g2-1 (term 3)" for every group whose leader or term changed. */
function leadershipChanges(
  before: ReadonlyMap<string, { name: string; term: number }>,
  after: ReadonlyMap<string, { name: string; term: number }>,
): string[] {
  const changes: string[] = [];
  for (const [group, was] of before) {
    const now = after.get(group);
    if (now === undefined || (now.name === was.name && now.term === was.term)) continue;
    changes.push(`${group}: ${was.name} (term ${was.term}) -> ${now.name} (term ${now.term})`);
  }
  return changes;
}

/** Whatever is not a shard replica is the coordinator role (one process, or the members of the meta group). */
function cpuRole(cluster: LocalCluster, name: string, leaders: ReadonlyMap<string, { name: string }>): string {
  if (!cluster.groups.some((group) => cluster.shardNames(group).includes(name))) return 'coordinator';
  if (cluster.engine === 'single') return 'shards';
  return [...leaders.values()].some((leader) => leader.name === name) ? 'shard_leaders' : 'shard_followers';
}
