// `npm run bench -- <name> [flags]`: runs one benchmark; JSON results on stdout, progress on stderr.
import { runKvBench } from './kv/kv-bench.js';
import { runRaftBench } from './raft/raft-bench.js';

const BENCHMARKS: Record<string, { summary: string; run: (argv: readonly string[]) => Promise<number> }> = {
  kv: { summary: 'put / linearizable get through the coordinator and direct, against a gRPC echo floor', run: runKvBench },
  raft: { summary: 'one Concord shard group (3 Raft replicas) next to a 3-member etcd cluster: put / linearizable get', run: runRaftBench },
};

const USAGE = `Usage: npm run bench -- <benchmark> [flags]   (<benchmark> --help lists its flags)

Benchmarks:
${Object.entries(BENCHMARKS)
  .map(([name, { summary }]) => `  ${name.padEnd(8)}${summary}`)
  .join('\n')}
`;

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  const benchmark = name === undefined ? undefined : BENCHMARKS[name];
  if (benchmark === undefined) {
    process.stderr.write(`${name === undefined ? 'bench: name a benchmark' : `bench: unknown benchmark ${JSON.stringify(name)}`}\n\n${USAGE}`);
    return 2;
  }
  return benchmark.run(rest);
}

/** Exits once stdout and stderr are flushed: to a pipe they are written asynchronously. */
async function exitWhenFlushed(code: number): Promise<never> {
  const flushed = (stream: NodeJS.WriteStream) => new Promise<void>((resolve) => stream.write('', () => resolve()));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => exitWhenFlushed(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return exitWhenFlushed(1);
  },
);
