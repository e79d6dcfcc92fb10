// Entry point of the shard role, and the only place that reads flags and environment variables.
// Run directly (`node services/shard/dist/main.js --group-id g1 ...`) or through runShard().

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { OptionsError, createLogger, formatOptionsHelp, onShutdownSignals, startTelemetry } from '@concord/runtime';
import { SHARD_OPTION_SPECS, compileShardOptions, type ShardOptions } from './options.js';
import { startShardNode, type ShardNode } from './shard-node.js';

const USAGE = `Usage: concord serve shard --group-id <id> --data-dir <dir> --ring-groups <g1,g2,...> [settings]

Serves one replica of a shard group (gRPC service concord.v1.Shard). Once it listens it logs one
line with msg "serving" and its address. SIGTERM or SIGINT shut it down gracefully.

Settings (a flag wins over its environment variable, which wins over the default):
`;

/** Exit status for bad settings, as for a usage error in most command-line tools. */
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

export async function runShard(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + formatOptionsHelp(SHARD_OPTION_SPECS));
    return;
  }
  let options: ShardOptions;
  try {
    options = compileShardOptions({ argv, env });
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    process.stderr.write(`concord shard: ${error.message}\nRun with --help to list every setting.\n`);
    process.exit(EXIT_USAGE);
  }

  // Before anything that makes gRPC calls, so they are traced.
  const telemetry = startTelemetry('concord-shard');
  const logger = createLogger({ service: 'shard', level: options.logLevel, memberId: options.memberId });
  let node: ShardNode;
  try {
    node = await startShardNode(options, logger);
  } catch (error) {
    logger.fatal({ err: error, group_id: options.groupId, data_dir: options.dataDir }, 'failed to start');
    await telemetry.shutdown();
    process.exit(EXIT_FAILURE);
  }

  // Installed before "serving" is logged, so a supervisor that signals as soon as it reads that
  // line still gets a graceful shutdown.
  onShutdownSignals(async () => {
    try {
      await node.stop();
    } finally {
      await telemetry.shutdown();
    }
  }, logger);
  // Tests and the local launcher parse this line to learn the port: keep its msg and fields.
  logger.info({ address: node.address, group_id: node.groupId, member_id: node.memberId }, 'serving');
}

/** Whether this module is the script node was started with (not imported by another one). */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    // realpath: launchers often start us through a symlink (node_modules/.bin).
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  runShard(process.argv.slice(2), process.env).catch((error: unknown) => {
    process.stderr.write(`concord shard: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT_FAILURE);
  });
}
