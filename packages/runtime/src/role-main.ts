// The life cycle every Concord role's main shares: --help, settings compiled from flags and
// environment (exit 2 naming the bad setting), telemetry started before any gRPC call, the node
// started (exit 1 if it cannot), graceful shutdown on SIGTERM/SIGINT, and exactly one "serving" log
// line once it listens — the line the local launcher and the tests parse to learn the address.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { formatOptionsHelp, OptionsError, type OptionSources, type OptionSpec } from './options.js';
import { createLogger, type Logger } from './logging.js';
import { DEFAULT_SERVER_NODE_FLAGS, NODE_FLAGS_ENV, relaunchWithServerNodeFlags } from './node-flags.js';
import { onShutdownSignals } from './server.js';
import { startTelemetry } from './telemetry.js';

/** Exit status for bad settings, as for a usage error in most command-line tools. */
export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;

export interface RunningNode {
  address: string;
  stop(): Promise<void>;
}

export interface RoleDefinition<Options extends { logLevel: string; memberId: string }, Node extends RunningNode> {
  /** Short role name used in messages and logs, e.g. "shard". */
  role: string;
  /** OpenTelemetry service.name, e.g. "concord-shard" (OTEL_SERVICE_NAME overrides it). */
  serviceName: string;
  /** Usage text printed before the settings list by --help. */
  usage: string;
  specs: Record<string, OptionSpec>;
  compile(sources: OptionSources): Options;
  start(options: Options, logger: Logger): Promise<Node>;
  /** Fields logged with a start-up failure (e.g. data dir, listen address). */
  failureFields(options: Options): Record<string, unknown>;
  /** Fields of the "serving" line besides `address`. */
  servingFields(node: Node, options: Options): Record<string, unknown>;
}

const NODE_FLAGS_HELP = `
Node flags (env ${NODE_FLAGS_ENV}; default ${DEFAULT_SERVER_NODE_FLAGS.join(' ')}): the flags of node this
process runs with, separated by spaces; empty for none. Started without them, it restarts itself with
them (same pid and arguments); a flag of the same name given to node by hand wins.
`;

export async function runRole<Options extends { logLevel: string; memberId: string }, Node extends RunningNode>(
  definition: RoleDefinition<Options, Node>,
  argv: string[],
  env: NodeJS.ProcessEnv,
): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(definition.usage + formatOptionsHelp(definition.specs) + NODE_FLAGS_HELP);
    return;
  }
  let options: Options;
  try {
    options = definition.compile({ argv, env });
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    process.stderr.write(`concord ${definition.role}: ${error.message}\nRun with --help to list every setting.\n`);
    process.exit(EXIT_USAGE);
  }

  // Before anything that makes gRPC calls, so they are traced.
  const telemetry = startTelemetry(definition.serviceName);
  const logger = createLogger({ service: definition.role, level: options.logLevel, memberId: options.memberId });
  let node: Node;
  try {
    node = await definition.start(options, logger);
  } catch (error) {
    logger.fatal({ err: error, ...definition.failureFields(options) }, 'failed to start');
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
  logger.info({ address: node.address, ...definition.servingFields(node, options) }, 'serving');
}

/**
 * Whether the module at `moduleUrl` (pass import.meta.url) is the script node was started with,
 * rather than imported by another one (e.g. `concord serve`).
 */
export function isEntryPoint(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    // realpath: launchers often start us through a symlink (node_modules/.bin).
    return moduleUrl === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

/**
 * Runs a role as the process's entry point, turning an unexpected failure into exit status 1. A
 * process started without the server's node flags (node-flags.ts) is first replaced by one started
 * with them; a CONCORD_NODE_FLAGS that is no list of flags exits with status 2.
 */
export function runRoleAsEntryPoint(run: () => Promise<void>, role: string): void {
  if (!process.argv.includes('--help') && !process.argv.includes('-h')) {
    try {
      relaunchWithServerNodeFlags(role);
    } catch (error) {
      process.stderr.write(`concord ${role}: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT_USAGE);
    }
  }
  run().catch((error: unknown) => {
    process.stderr.write(`concord ${role}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT_FAILURE);
  });
}
