// The settings of `npm run bench -- kv`, read from its flags.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export interface KvBenchOptions {
  /** Measured seconds per scenario. */
  durationS: number;
  /** Unmeasured seconds of load before each scenario's window. */
  warmupS: number;
  /** Requests in flight, one scenario each. */
  concurrencies: number[];
  /** Scenario filter terms (see selectScenarios); empty runs every scenario. */
  scenarioFilter: string[];
  /** Keys written before the get scenarios, which then read them round-robin. */
  readKeys: number;
  /** Deadline of each request. */
  deadlineMs: number;
  /** When set, every server process (echo, shards, coordinator) writes a V8 CPU profile here on exit. */
  cpuProfDir: string | undefined;
  /** Consensus engine of the shard groups: raft (three replicas each, the default) or single (one). */
  engine: ShardEngine;
}

export const SHARD_ENGINES = ['raft', 'single'] as const;
export type ShardEngine = (typeof SHARD_ENGINES)[number];

export class UsageError extends Error {}

export const KV_USAGE = `Usage: npm run bench -- kv [flags]

Measures unary gRPC echo (the floor) and Concord put / linearizable get, through the coordinator
and directly to shard leaders, each in a closed loop, on a local cluster of three shard groups with
fsync on. JSON results on stdout, progress on stderr.

Flags:
  --duration <s>        measured seconds per scenario (default 5)
  --warmup <s>          unmeasured seconds of load before each scenario (default 1)
  --concurrency <list>  requests in flight, comma-separated (default 1,64)
  --scenarios <list>    run only matching scenarios, comma-separated; a term matches a scenario id
                        when each of its dash-separated words is one of the id's words, e.g.
                        "echo", "direct-put", "get-c64", "coordinator-get-c1" (default: all)
  --read-keys <n>       keys written before the get scenarios (default 4096)
  --deadline-ms <ms>    deadline of each request (default 5000)
  --engine <name>       shard groups of three Raft replicas (raft, the default, as npm start runs
                        them) or of one replica with its write-ahead log only (single)
  --cpu-prof-dir <dir>  write a V8 CPU profile of every server process to <dir> when it stops
  --help                this text

Scenario ids: echo-c<N>, <coordinator|direct>-<put|get>-c<N>.
`;

const LIMITS = {
  durationS: { min: 0.1, max: 600 },
  warmupS: { min: 0, max: 60 },
  concurrency: { min: 1, max: 1024 },
  readKeys: { min: 1, max: 1_000_000 },
  deadlineMs: { min: 1, max: 600_000 },
} as const;

function number(flag: string, text: string, limits: { min: number; max: number }, integer: boolean): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${flag}: expected ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(text)}`);
  }
  if (value < limits.min || value > limits.max) {
    throw new UsageError(`--${flag}: must be between ${limits.min} and ${limits.max}, got ${value}`);
  }
  return value;
}

function list(text: string): string[] {
  return text.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/** Returns undefined when --help was asked for. Throws UsageError naming the flag at fault. */
export function parseKvBenchArgs(argv: readonly string[]): KvBenchOptions | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        duration: { type: 'string', default: '5' },
        warmup: { type: 'string', default: '1' },
        concurrency: { type: 'string', default: '1,64' },
        scenarios: { type: 'string', default: '' },
        'read-keys': { type: 'string', default: '4096' },
        'deadline-ms': { type: 'string', default: '5000' },
        'cpu-prof-dir': { type: 'string' },
        engine: { type: 'string', default: 'raft' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return undefined;
  const concurrencies = [...new Set(list(values.concurrency).map((item) => number('concurrency', item, LIMITS.concurrency, true)))];
  if (concurrencies.length === 0) throw new UsageError('--concurrency: name at least one level, e.g. 1,64');
  const cpuProfDir = values['cpu-prof-dir'];
  if (cpuProfDir !== undefined && cpuProfDir.trim() === '') throw new UsageError('--cpu-prof-dir: expected a directory');
  const engine = SHARD_ENGINES.find((name) => name === values.engine);
  if (engine === undefined) throw new UsageError(`--engine: expected ${SHARD_ENGINES.join(' or ')}, got ${JSON.stringify(values.engine)}`);
  return {
    engine,
    durationS: number('duration', values.duration, LIMITS.durationS, false),
    warmupS: number('warmup', values.warmup, LIMITS.warmupS, false),
    concurrencies: concurrencies.sort((a, b) => a - b),
    scenarioFilter: list(values.scenarios),
    readKeys: number('read-keys', values['read-keys'], LIMITS.readKeys, true),
    deadlineMs: number('deadline-ms', values['deadline-ms'], LIMITS.deadlineMs, true),
    cpuProfDir: cpuProfDir === undefined ? undefined : resolve(cpuProfDir),
  };
}
