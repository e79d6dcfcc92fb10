// Entry point of the coordinator role, and the only place that reads flags and environment
// variables. Run directly (`node services/coordinator/dist/main.js --peers ... --groups g1=...`) or
// through runCoordinator().
import { BootstrapRefusedError } from '@concord/consensus';
import { EXIT_USAGE, isEntryPoint, runRole, runRoleAsEntryPoint, type Logger, type RoleDefinition } from '@concord/runtime';
import { startCoordinator, type CoordinatorNode } from './coordinator-node.js';
import { COORDINATOR_OPTION_SPECS, compileCoordinatorOptions, type CoordinatorOptions } from './options.js';

const USAGE = `Usage: concord serve coordinator --member-id <id> --listen <host:port> --peers <id=host:port,...>
                                --data-dir <dir> --groups <g1=host:port[|host:port...],...> [settings]
       concord serve coordinator --engine config --groups <g1=host:port[|host:port...],...> [settings]

Serves the public API (gRPC services concord.v1.KV, Txn, MapReduce and Cluster) and routes every
key to the shard group that owns it. With the raft engine (the default) the coordinators of --peers
form the meta group, which replicates the ring and the shard-group directory; the same port also
serves concord.v1.Consensus to the other coordinators, and a coordinator that does not lead the
meta group forwards client calls to the one that does. Once it listens it logs one line with msg
"serving" and its address. SIGTERM or SIGINT shut it down gracefully.

A meta group of three: start each coordinator with the same --peers and --groups, and its own
--member-id, --listen and --data-dir,
  --member-id coordinator-0 --listen 127.0.0.1:7070 --data-dir .concord/coordinator-0
  --peers coordinator-0=127.0.0.1:7070,coordinator-1=127.0.0.1:7071,coordinator-2=127.0.0.1:7072
  --groups g1=127.0.0.1:7101,g2=127.0.0.1:7102
(and coordinator-1 on 7071, coordinator-2 on 7072). --groups, --ring-vnodes and --ring-epoch seed
an empty meta group only; afterwards the replicated ring is served.

In a Kubernetes pod: --listen 0.0.0.0:7070 with the pods' DNS names in --peers (and, to say it
outright, --advertise <pod>.<headless-service>:7070). With --tls-cert, --tls-key and --tls-ca every
connection, in and out, is mutual TLS.

Settings (a flag wins over its environment variable, which wins over the default):
`;

const COORDINATOR_ROLE: RoleDefinition<CoordinatorOptions, CoordinatorNode> = {
  role: 'coordinator',
  serviceName: 'concord-coordinator',
  usage: USAGE,
  specs: COORDINATOR_OPTION_SPECS,
  compile: compileCoordinatorOptions,
  start: startOrRefuse,
  failureFields: (options) => ({ listen: `${options.listenHost}:${options.listenPort}` }),
  servingFields: (node, options) => ({
    ...(node.engine === 'raft'
      ? { engine: node.engine, meta_peers: Object.keys(options.peers) }
      : { engine: node.engine, groups: options.groups.map((group) => group.groupId), ring_epoch: options.ringEpoch }),
    ...(node.metricsAddress !== undefined ? { metrics_address: node.metricsAddress } : {}),
  }),
};

/**
 * A coordinator that lost its data refuses to start (bootstrap-guard.ts): exit status 2 with the
 * reason on stderr, like a bad setting, since restarting it as it is can never help.
 */
async function startOrRefuse(options: CoordinatorOptions, logger: Logger): Promise<CoordinatorNode> {
  try {
    return await startCoordinator(options, logger);
  } catch (error) {
    if (!(error instanceof BootstrapRefusedError)) throw error;
    logger.fatal({ data_dir: options.dataDir, peer: error.evidence.peerId, reason: error.message }, 'refusing to start: this coordinator lost its data');
    process.stderr.write(`concord coordinator: ${error.message}\n`);
    process.exit(EXIT_USAGE);
  }
}

export function runCoordinator(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return runRole(COORDINATOR_ROLE, argv, env);
}

if (isEntryPoint(import.meta.url)) runRoleAsEntryPoint(() => runCoordinator(process.argv.slice(2), process.env), 'coordinator');
