// Entry point of the coordinator role, and the only place that reads flags and environment
// variables. Run directly (`node services/coordinator/dist/main.js --groups g1=...`) or through
// runCoordinator().
import { isEntryPoint, runRole, runRoleAsEntryPoint, type RoleDefinition } from '@concord/runtime';
import { startCoordinator, type CoordinatorNode } from './coordinator-node.js';
import { COORDINATOR_OPTION_SPECS, compileCoordinatorOptions, type CoordinatorOptions } from './options.js';

const USAGE = `Usage: concord serve coordinator --groups <g1=host:port[|host:port...],...> [settings]

Serves the public API (gRPC services concord.v1.KV, Txn, MapReduce and Cluster) and routes every
key to the shard group that owns it. Once it listens it logs one line with msg "serving" and its
address. SIGTERM or SIGINT shut it down gracefully.

Settings (a flag wins over its environment variable, which wins over the default):
`;

const COORDINATOR_ROLE: RoleDefinition<CoordinatorOptions, CoordinatorNode> = {
  role: 'coordinator',
  serviceName: 'concord-coordinator',
  usage: USAGE,
  specs: COORDINATOR_OPTION_SPECS,
  compile: compileCoordinatorOptions,
  start: startCoordinator,
  failureFields: (options) => ({ listen: `${options.listenHost}:${options.listenPort}` }),
  servingFields: (_node, options) => ({ groups: options.groups.map((group) => group.groupId), ring_epoch: options.ringEpoch }),
};

export function runCoordinator(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return runRole(COORDINATOR_ROLE, argv, env);
}

if (isEntryPoint(import.meta.url)) runRoleAsEntryPoint(() => runCoordinator(process.argv.slice(2), process.env), 'coordinator');
