// `npm run sim -- --seed N` replays one seed; `npm run sim -- --seeds 1..K [--jobs J]` runs a range.
//
//   --seed N        run seed N (prints its setup, statistics and digest)
//   --seeds A..B    run seeds A to B inclusive (or --seeds K for 1..K)
//   --ticks N       steps of the safety phase (default DEFAULT_SAFETY_TICKS; a step is a tick but in
//                   stale-lease seeds, which run 8 times as many steps of 1/40 tick)
//   --jobs J        run seeds on J worker threads (results do not depend on it)
//   --verbose       print every event of the run (with --seed)
//   --scenario S    run scenario S (random, figure-8, stale-lease) on every seed instead of the one
//                   each seed draws
//   --mutant M      run a deliberately broken core (raft/mutations.ts), to see how many seeds it
//                   takes to catch: commit-earlier-term (§5.4.2, Figure 8), lease-ignores-drift or
//                   lease-from-ack (§6.4.1); a failing seed replays with the same --mutant
//
// A failing seed prints `SEED=<n> git=<sha>`, the failing check, its message and the last events
// before it; the exit code is then 1. The last line summarizes: seeds passed, operations checked,
// histories the linearizability checker could not decide within its budget, and the time taken.
import { execFileSync } from 'node:child_process';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { RaftCoreMutations } from '../raft/mutations.js';
import { SCENARIOS, type ScenarioName } from './nemesis.js';
import { DEFAULT_SAFETY_TICKS, runSimulation, type SimulationOptions, type SimulationResult, type SimulationStats } from './simulator.js';

/** The deliberate bugs --mutant can switch on, by name. */
const MUTANTS: Readonly<Record<string, RaftCoreMutations>> = {
  'commit-earlier-term': { commitEarlierTermByCounting: true },
  'lease-ignores-drift': { leaseIgnoresClockDrift: true },
  'lease-from-ack': { leaseCountsFromAckArrival: true },
};

interface Args {
  first: number;
  last: number;
  single: boolean;
  ticks: number;
  jobs: number;
  verbose: boolean;
  scenario: ScenarioName | undefined;
  mutant: string | undefined;
}

/** What a worker needs to run a seed as the main thread would. */
interface RunSettings {
  ticks: number;
  scenario: ScenarioName | undefined;
  mutant: string | undefined;
}

function simulationOptions(seed: number, settings: RunSettings): SimulationOptions {
  const options: SimulationOptions = { seed, ticks: settings.ticks };
  if (settings.scenario !== undefined) options.scenario = settings.scenario;
  if (settings.mutant !== undefined) {
    const mutations = MUTANTS[settings.mutant];
    if (mutations === undefined) throw new Error(`sim: unknown mutant ${settings.mutant}`);
    options.mutations = mutations;
  }
  return options;
}

/** Failures printed in full; later ones get one line each. */
const DETAILED_FAILURES = 3;
const LISTED_FAILURES = 50;

function usage(problem: string): never {
  console.error(
    `sim: ${problem}\nusage: sim --seed N | --seeds A..B [--ticks N] [--jobs J] [--verbose] [--scenario S] [--mutant M]`,
  );
  process.exit(2);
}

function positiveInteger(text: string | undefined, flag: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isSafeInteger(value) || value < 1) usage(`${flag} needs a positive integer, got ${String(text)}`);
  return value;
}

export function parseArgs(argv: readonly string[]): Args {
  const args: Args = {
    first: 1,
    last: 1,
    single: true,
    ticks: DEFAULT_SAFETY_TICKS,
    jobs: 1,
    verbose: false,
    scenario: undefined,
    mutant: undefined,
  };
  let chosen = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string | undefined => argv[++i];
    switch (flag) {
      case '--seed':
        args.first = args.last = positiveInteger(value(), '--seed');
        args.single = true;
        chosen = true;
        break;
      case '--seeds': {
        const text = value() ?? usage('--seeds needs A..B');
        const match = /^(\d+)(?:\.\.(\d+))?$/.exec(text);
        if (match === null) usage(`--seeds needs A..B, got ${text}`);
        const [a, b] = match[2] === undefined ? [1, Number(match[1])] : [Number(match[1]), Number(match[2])];
        if (a < 1 || b < a) usage(`--seeds range ${text} is empty or starts below 1`);
        args.first = a;
        args.last = b;
        args.single = false;
        chosen = true;
        break;
      }
      case '--ticks':
        args.ticks = positiveInteger(value(), '--ticks');
        break;
      case '--jobs':
        args.jobs = positiveInteger(value(), '--jobs');
        break;
      case '--verbose':
        args.verbose = true;
        break;
      case '--scenario': {
        const name = value();
        if (!SCENARIOS.includes(name as ScenarioName)) usage(`--scenario needs one of ${SCENARIOS.join(', ')}, got ${String(name)}`);
        args.scenario = name as ScenarioName;
        break;
      }
      case '--mutant': {
        const name = value();
        if (name === undefined || MUTANTS[name] === undefined) {
          usage(`--mutant needs one of ${Object.keys(MUTANTS).join(', ')}, got ${String(name)}`);
        }
        args.mutant = name;
        break;
      }
      default:
        usage(`unknown argument ${String(flag)}`);
    }
  }
  if (!chosen) usage('give --seed N or --seeds A..B');
  return args;
}

function gitSha(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The flags that make `--seed N` replay a seed of this run. */
function replayFlags(args: Args): string {
  let flags = '';
  if (args.ticks !== DEFAULT_SAFETY_TICKS) flags += ` --ticks ${args.ticks}`;
  if (args.scenario !== undefined) flags += ` --scenario ${args.scenario}`;
  if (args.mutant !== undefined) flags += ` --mutant ${args.mutant}`;
  return flags;
}

function printFailure(result: SimulationResult, sha: string, args: Args): void {
  const f = result.failure;
  if (f === undefined) return;
  console.log(`SEED=${result.seed} git=${sha}`);
  console.log(`  failed: ${f.check} (${f.phase} phase, ${result.stepsPerTick > 1 ? 'step' : 'tick'} ${f.tick})`);
  for (const line of f.message.split('\n')) console.log(`  ${line}`);
  console.log(`  setup: ${result.setup}`);
  console.log(`  replay: npm run sim -- --seed ${result.seed}${replayFlags(args)} --verbose`);
  console.log(`  last ${f.trace.length} events:`);
  for (const line of f.trace) console.log(`    ${line}`);
}

function describeStats(r: SimulationResult): string {
  const s = r.stats;
  return (
    `${r.ticks} ${r.stepsPerTick > 1 ? 'steps' : 'ticks'}, ${s.events} events, ${s.elections} leaders, ${s.committed} entries committed, ` +
    `${s.crashes} crashes (${s.tornRecordsDropped} torn records dropped, ${s.unsyncedRecordsKept} unsynced kept), ` +
    `${s.partitions} partitions, ${s.membershipChanges} membership changes, ${s.compactions} compactions, ` +
    `${s.snapshotsInstalled} snapshots installed, ${s.appliedDuringWrite} entries applied during a leader's write; ops ok=${s.opsOk} unknown=${s.opsUnknown} discarded=${s.opsDiscarded}; ` +
    `liveness in ${s.livenessTicks} ticks; linearizability ${r.linearizability} over ${r.operations} ops` +
    (r.scenario === 'random' ? '' : `; ${r.scenario} rounds ${s.nemesisRounds} (${s.nemesisStrikes} struck, ${s.nemesisAbandoned} given up)`)
  );
}

/** Runs the seeds of `args`, on `args.jobs` workers; calls `onResult` in completion order. */
async function runSeeds(args: Args, onResult: (r: SimulationResult) => void): Promise<void> {
  const seeds = Array.from({ length: args.last - args.first + 1 }, (_, i) => args.first + i);
  const jobs = Math.min(args.jobs, seeds.length);
  const settings: RunSettings = { ticks: args.ticks, scenario: args.scenario, mutant: args.mutant };
  if (jobs <= 1) {
    for (const seed of seeds) onResult(runSimulation(simulationOptions(seed, settings)));
    return;
  }
  let next = 0;
  await Promise.all(
    Array.from(
      { length: jobs },
      () =>
        new Promise<void>((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), { workerData: settings });
          const feed = (): void => {
            const seed = seeds[next++];
            if (seed === undefined) void worker.terminate().then(() => resolve());
            else worker.postMessage(seed);
          };
          worker.on('message', (result: SimulationResult) => {
            onResult(result);
            feed();
          });
          worker.on('error', reject);
          feed();
        }),
    ),
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const sha = gitSha();
  const started = performance.now();
  if (args.single) {
    const verbose = args.verbose ? { verbose: (line: string) => console.log(line) } : {};
    const result = runSimulation({ ...simulationOptions(args.first, args), ...verbose });
    console.log(`SEED=${result.seed} ${result.passed ? 'passed' : 'FAILED'}: ${result.setup}`);
    console.log(`  ${describeStats(result)}`);
    console.log(`  digest ${result.digest}`);
    if (!result.passed) printFailure(result, sha, args);
    if (result.linearizability === 'unknown') console.log('  warning: the linearizability check ran out of budget (unknown, not a pass)');
    const seconds = (performance.now() - started) / 1000;
    console.log(`sim: ${result.passed ? 1 : 0}/1 seeds passed, ${result.operations} operations checked, ${seconds.toFixed(1)} s`);
    process.exitCode = result.passed ? 0 : 1;
    return;
  }
  const total = args.last - args.first + 1;
  let done = 0;
  let passed = 0;
  let operations = 0;
  const undecided: number[] = [];
  const failed: number[] = [];
  const byScenario = new Map<string, { seeds: number; failed: number }>();
  const totals = new Map<keyof SimulationStats, number>();
  const progressEvery = total >= 1000 ? 1000 : 0;
  await runSeeds(args, (result) => {
    done++;
    operations += result.operations;
    for (const [key, value] of Object.entries(result.stats) as [keyof SimulationStats, number][]) {
      totals.set(key, (totals.get(key) ?? 0) + value);
    }
    if (result.linearizability === 'unknown') undecided.push(result.seed);
    const scenario = byScenario.get(result.scenario) ?? { seeds: 0, failed: 0 };
    byScenario.set(result.scenario, scenario);
    scenario.seeds++;
    if (!result.passed) scenario.failed++;
    if (result.passed) passed++;
    else {
      failed.push(result.seed);
      if (failed.length <= DETAILED_FAILURES) printFailure(result, sha, args);
      else if (failed.length <= LISTED_FAILURES) {
        console.log(`SEED=${result.seed} git=${sha} failed: ${result.failure?.check}: ${result.failure?.message.split('\n')[0]}`);
      }
    }
    if (progressEvery > 0 && done % progressEvery === 0) {
      console.log(`sim: ${done}/${total} seeds, ${failed.length} failed, ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
  });
  const seconds = (performance.now() - started) / 1000;
  const t = (key: keyof SimulationStats): number => totals.get(key) ?? 0;
  console.log(
    `sim: over all seeds: ${t('elections')} leaders elected, ${t('committed')} entries committed, ${t('crashes')} crashes ` +
      `(${t('tornRecordsDropped')} torn records dropped, ${t('unsyncedRecordsKept')} unsynced records kept), ${t('pauses')} pauses, ` +
      `${t('partitions')} partitions, ${t('membershipChanges')} membership changes, ${t('compactions')} compactions, ` +
      `${t('snapshotsInstalled')} snapshots installed, ${t('appliedDuringWrite')} entries applied during a leader's write; ` +
      `client operations ok=${t('opsOk')} unknown=${t('opsUnknown')} discarded=${t('opsDiscarded')}`,
  );
  const scenarios = SCENARIOS.filter((name) => byScenario.has(name)).map((name) => {
    const { seeds, failed: failures } = byScenario.get(name) ?? { seeds: 0, failed: 0 };
    return `${name} ${seeds}${failures > 0 ? ` (${failures} failed)` : ''}`;
  });
  console.log(
    `sim: scenarios: ${scenarios.join(', ')}; nemesis rounds ${t('nemesisRounds')} (${t('nemesisStrikes')} struck, ` +
      `${t('nemesisAbandoned')} given up)`,
  );
  if (undecided.length > 0) {
    undecided.sort((a, b) => a - b);
    const listed = `${undecided.slice(0, 20).join(', ')}${undecided.length > 20 ? ', …' : ''}`;
    console.log(`sim: warning: linearizability undecided within the search budget for ${undecided.length} seed(s): ${listed}`);
  }
  if (failed.length > 0) {
    failed.sort((a, b) => a - b);
    console.log(`sim: failing seeds: ${failed.slice(0, LISTED_FAILURES).join(', ')}${failed.length > LISTED_FAILURES ? ', …' : ''}`);
  }
  console.log(
    `sim: ${passed}/${total} seeds passed (${args.first}..${args.last}), ${operations} operations checked, ` +
      `${undecided.length} undecided, ${seconds.toFixed(1)} s (${(total / seconds).toFixed(1)} seeds/s, jobs=${args.jobs}) git=${sha}` +
      (args.mutant !== undefined ? ` mutant=${args.mutant}` : ''),
  );
  process.exitCode = failed.length === 0 ? 0 : 1;
}

if (isMainThread) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
} else {
  const settings = workerData as RunSettings;
  parentPort?.on('message', (seed: number) => {
    parentPort?.postMessage(runSimulation(simulationOptions(seed, settings)));
  });
}
