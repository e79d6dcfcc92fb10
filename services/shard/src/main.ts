// Entry point of the shard role, and the only place that reads flags and environment variables.
// Run directly (`node services/shard/dist/main.js --group-id g1 ...`) or through runShard().
import { BootstrapRefusedError } from '@concord/consensus';
import { EXIT_USAGE, isEntryPoint, runRole, runRoleAsEntryPoint, type Logger, type RoleDefinition } from '@concord/runtime';
import { SHARD_OPTION_SPECS, compileShardOptions, type ShardOptions } from './options.js';
import { startShardNode, type ShardNode } from './shard-node.js';

const USAGE = `Usage: concord serve shard --group-id <id> --member-id <id> --data-dir <dir> --ring-groups <g1,g2,...>
                          --peers <id=host:port,...> --listen <host:port> [settings]

Serves one replica of a shard group: gRPC service concord.v1.Shard for clients and, with the raft
engine (the default), concord.v1.Consensus for the other members of the group, on one port. Once it
listens it logs one line with msg "serving" and its address. SIGTERM or SIGINT shut it down
gracefully.

A group of three: start each member with the same --peers and its own --member-id and --listen,
  --member-id g1-0 --listen 127.0.0.1:7101 --peers g1-0=127.0.0.1:7101,g1-1=127.0.0.1:7102,g1-2=127.0.0.1:7103
(and g1-1 on 7102, g1-2 on 7103). --engine single serves a group of one without --peers.

In a Kubernetes pod: --listen 0.0.0.0:7100 with the pods' DNS names in --peers (and, to say it
outright, --advertise <pod>.<headless-service>:7100). With --tls-cert, --tls-key and --tls-ca every
connection, in and out, is mutual TLS.

Settings (a flag wins over its environment variable, which wins over the default):
`;

const SHARD_ROLE: RoleDefinition<ShardOptions, ShardNode> = {
  role: 'shard',
  serviceName: 'concord-shard',
  usage: USAGE,
  specs: SHARD_OPTION_SPECS,
  compile: compileShardOptions,
  start: startOrRefuse,
  failureFields: (options) => ({ group_id: options.groupId, data_dir: options.dataDir }),
  servingFields: (node) => ({
    group_id: node.groupId,
    engine: node.engine,
    ...(node.metricsAddress !== undefined ? { metrics_address: node.metricsAddress } : {}),
  }),
};

/**
 * A replica that lost its data refuses to start (bootstrap-guard.ts): exit status 2 with the reason
 * on stderr, like a bad setting, since restarting it as it is can never help.
 */
async function startOrRefuse(options: ShardOptions, logger: Logger): Promise<ShardNode> {
  try {
    return await startShardNode(options, logger);
  } catch (error) {
    if (!(error instanceof BootstrapRefusedError)) throw error;
    logger.fatal({ group_id: options.groupId, data_dir: options.dataDir, peer: error.evidence.peerId, reason: error.message }, 'refusing to start: this replica lost its data');
    process.stderr.write(`concord shard: ${error.message}\n`);
    process.exit(EXIT_USAGE);
  }
}

export function runShard(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return runRole(SHARD_ROLE, argv, env);
}

if (isEntryPoint(import.meta.url)) runRoleAsEntryPoint(() => runShard(process.argv.slice(2), process.env), 'shard');
