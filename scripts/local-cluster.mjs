// The local playground of deploy/local/cluster.json, shared by `npm start` (scripts/start.mjs, the
// supervisor that owns every process) and `npm run local` (scripts/local.mjs, which asks the
// running supervisor to kill or restart a member). Standard library only, like every script here.
//
// The two talk through files under .concord/control/:
//   supervisor.json        what the supervisor runs: its pid, every member's pid, state and
//                          address, and each group's leader as last logged (rewritten atomically)
//   requests/<id>.json     {id, action, member}, written (atomically) by local.mjs
//   responses/<id>.json    {ok, message}, the supervisor's answer
// Files, not a socket: nothing to bind, nothing to clean up after a crash, and readable by hand.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { root } from './lib.mjs';

export const dataRoot = join(root, '.concord');
export const logsDir = join(dataRoot, 'logs');
export const controlDir = join(dataRoot, 'control');
export const requestsDir = join(controlDir, 'requests');
export const responsesDir = join(controlDir, 'responses');
export const stateFile = join(controlDir, 'supervisor.json');

/** The actions `npm run local -- <action> <member>` can ask for. */
export const MEMBER_ACTIONS = ['restart', 'kill', 'stop'];

/** A path as the user should type it: relative to the repository root. */
export function shown(path) {
  return relative(root, path) || '.';
}

/** The command that asks the supervisor to do `action` to `member`. */
export function localCommand(action, member) {
  return `npm run local -- ${action} ${member}`;
}

/** The group name the coordinators' members go by: the meta group, which holds the ring. */
export const META_GROUP = 'meta';

/**
 * The processes of deploy/local/cluster.json: every shard replica (name = member id, e.g. "g1-0")
 * and every coordinator (e.g. "coordinator-0"), each with the exact command line that starts it.
 * `coordinators` lists the coordinators' addresses in member order; the first is the one the
 * banner and the README name.
 */
export function loadLocalCluster() {
  const config = JSON.parse(readFileSync(join(root, 'deploy', 'local', 'cluster.json'), 'utf8'));
  const engine = config.engine ?? 'raft';
  const groupIds = config.shardGroups.map((group) => group.id);
  const ringFlags = ['--ring-vnodes', String(config.ringVnodes), '--ring-epoch', String(config.ringEpoch)];
  const processes = [];
  for (const group of config.shardGroups) {
    const peers = group.members.map((member) => `${member.id}=${member.listen}`).join(',');
    for (const member of group.members) {
      processes.push({
        name: member.id,
        kind: 'shard',
        group: group.id,
        address: member.listen,
        serviceName: 'concord-shard',
        script: 'services/shard/dist/main.js',
        dataDir: join(dataRoot, member.id),
        args: [
          '--engine', engine,
          '--group-id', group.id,
          '--member-id', member.id,
          '--listen', member.listen,
          ...(engine === 'raft' ? ['--peers', peers] : []),
          '--data-dir', join(dataRoot, member.id),
          '--ring-groups', groupIds.join(','),
          ...ringFlags,
        ],
      });
    }
  }
  // The coordinators form the meta group (Raft), which replicates the ring: --groups and the ring
  // flags seed it when it is empty, and every coordinator gets the same ones.
  const coordinatorProcesses = [];
  const metaPeers = config.coordinators.map((coordinator) => `${coordinator.id}=${coordinator.listen}`).join(',');
  const groupsFlag = config.shardGroups.map((group) => `${group.id}=${group.members.map((member) => member.listen).join('|')}`).join(',');
  for (const coordinator of config.coordinators) {
    coordinatorProcesses.push({
      name: coordinator.id,
      kind: 'coordinator',
      group: META_GROUP,
      address: coordinator.listen,
      serviceName: 'concord-coordinator',
      script: 'services/coordinator/dist/main.js',
      dataDir: join(dataRoot, coordinator.id),
      args: [
        '--engine', 'raft',
        '--member-id', coordinator.id,
        '--listen', coordinator.listen,
        '--peers', metaPeers,
        '--data-dir', join(dataRoot, coordinator.id),
        '--groups', groupsFlag,
        ...ringFlags,
      ],
    });
  }
  // Coordinators first, as `concord status` lists the meta group first.
  processes.unshift(...coordinatorProcesses);
  for (const each of processes) each.logPath = join(logsDir, `${each.name}.log`);
  const coordinators = config.coordinators.map((coordinator) => coordinator.listen);
  return { config, engine, groupIds, coordinators, processes };
}

/** Whether a process with this pid exists (and may be signalled by us). */
export function isAlive(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Whether `pid` is alive and, where /proc tells (Linux), still runs a command containing `needle`:
 * a pid from an old state file may since belong to an unrelated process.
 */
export function isAliveRunning(pid, needle) {
  if (!isAlive(pid)) return false;
  const cmdline = `/proc/${pid}/cmdline`;
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    return readFileSync(cmdline, 'utf8').split('\0').join(' ').includes(needle);
  } catch {
    return false;
  }
}

/** The supervisor's state file, or undefined when there is none (or it is unreadable). */
export function readState() {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Writes `value` as JSON to `path` so that a reader never sees half of it. */
export function writeJsonAtomic(path, value) {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(temp, path);
}

export function ensureControlDirs() {
  for (const dir of [logsDir, requestsDir, responsesDir]) mkdirSync(dir, { recursive: true });
}

/** Request files waiting for the supervisor, oldest first. */
export function pendingRequests() {
  if (!existsSync(requestsDir)) return [];
  return readdirSync(requestsDir)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => join(requestsDir, name));
}

export function removeQuietly(path) {
  rmSync(path, { force: true, recursive: true });
}

// ------------------------------------------------------------------ Jaeger (`npm start -- --jaeger`)

/** The binary `bash scripts/install-tools.sh jaeger` builds, and the configuration it runs with. */
export const jaegerBinary = join(root, '.tools', 'bin', 'jaeger');
export const jaegerConfig = join(root, 'deploy', 'local', 'jaeger.yaml');
export const jaegerLogPath = join(logsDir, 'jaeger.log');

/**
 * Where the local Jaeger listens: the well-known ports on 127.0.0.1, each overridable by the
 * JAEGER_* variable deploy/local/jaeger.yaml reads (e.g. JAEGER_QUERY_HTTP_ENDPOINT=127.0.0.1:26686
 * when 16686 is taken).
 */
export function jaegerEndpoints(env = process.env) {
  const pick = (name, fallback) => (env[name] ?? '').trim() || fallback;
  return {
    otlpGrpc: pick('JAEGER_OTLP_GRPC_ENDPOINT', '127.0.0.1:4317'),
    otlpHttp: pick('JAEGER_OTLP_HTTP_ENDPOINT', '127.0.0.1:4318'),
    queryHttp: pick('JAEGER_QUERY_HTTP_ENDPOINT', '127.0.0.1:16686'),
    queryGrpc: pick('JAEGER_QUERY_GRPC_ENDPOINT', '127.0.0.1:16685'),
    health: pick('JAEGER_HEALTH_ENDPOINT', '127.0.0.1:13133'),
  };
}

/** The JAEGER_* variables that make the jaeger process listen on `endpoints`. */
export function jaegerProcessEnv(endpoints) {
  return {
    JAEGER_OTLP_GRPC_ENDPOINT: endpoints.otlpGrpc,
    JAEGER_OTLP_HTTP_ENDPOINT: endpoints.otlpHttp,
    JAEGER_QUERY_HTTP_ENDPOINT: endpoints.queryHttp,
    JAEGER_QUERY_GRPC_ENDPOINT: endpoints.queryGrpc,
    JAEGER_HEALTH_ENDPOINT: endpoints.health,
  };
}

/**
 * The OTEL_* variables that make a Concord process export its traces to that Jaeger, over
 * OTLP/HTTP. The batch delay is shortened from the SDK's 5 s so a request shows up about a second
 * after it was made.
 */
export function otelEnvFor(endpoints) {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://${endpoints.otlpHttp}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_BSP_SCHEDULE_DELAY: '1000',
  };
}
