// The cross-process test harness, for other test suites and benchmarks that need a real cluster.
export { startLocalCluster, freePorts, shardProcessName, memberIdOf, describeExit, LocalCluster } from './harness/cluster.js';
export type { ClusterOptions, CoordinatorStatus, ProcessExit, MemberStatus } from './harness/cluster.js';
export { runCommand, describeResult } from './harness/command.js';
export type { CommandOptions, CommandResult } from './harness/command.js';
export { writeKeys } from './harness/writer.js';
export type { WriteLoad, WriteOutcome, WriteReport } from './harness/writer.js';
