// Entry point of the coordinator role, and the only place that reads flags and environment
// variables. Run directly (`node services/coordinator/dist/main.js --groups g1=...`) or through
// runCoordinator().

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { OptionsError, createLogger, formatOptionsHelp, onShutdownSignals, startTelemetry } from '@concord/runtime';
import { startCoordinator, type CoordinatorNode } from './coordinator-node.js';
import { COORDINATOR_OPTION_SPECS, compileCoordinatorOptions, type CoordinatorOptions } from './options.js';

const USAGE = `Usage: concord serve coordinator --groups <g1=host:port[|host:port...],...> [settings]

Serves the public API (gRPC services concord.v1.KV, Txn, MapReduce and Cluster) and routes every
key to the shard group that owns it. Once it listens it logs one line with msg "serving" and its
address. SIGTERM or SIGINT shut it down gracefully.

Settings (a flag wins over its environment variable, which wins over the default):
`;

/** Exit status for bad settings, as for a usage error in most command-line tools. */
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

export async function runCoordinator(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + formatOptionsHelp(COORDINATOR_OPTION_SPECS));
    return;
  }
  let options: CoordinatorOptions;
  try {
    options = compileCoordinatorOptions({ argv, env });
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    process.stderr.write(`concord coordinator: ${error.message}\nRun with --help to list every setting.\n`);
    process.exit(EXIT_USAGE);
  }

  // Before anything that makes gRPC calls, so they are traced.
  const telemetry = startTelemetry('concord-coordinator');
  const logger = createLogger({ service: 'coordinator', level: options.logLevel, memberId: options.memberId });
  let node: CoordinatorNode;
  try {
    node = await startCoordinator(options, logger);
  } catch (error) {
    logger.fatal({ err: error, listen: `${options.listenHost}:${options.listenPort}` }, 'failed to start');
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
  logger.info({ address: node.address, groups: options.groups.map((group) => group.groupId), ring_epoch: options.ringEpoch }, 'serving');
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
  runCoordinator(process.argv.slice(2), process.env).catch((error: unknown) => {
    process.stderr.write(`concord coordinator: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT_FAILURE);
  });
}
