// The coordinator role's settings: one table of flags, environment variables and defaults, compiled
// into a typed CoordinatorOptions. Only src/main.ts calls compileCoordinatorOptions; everything
// below takes options.

import { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP } from '@concord/ring';
import { compileOptionSpecs, LOG_LEVELS, OptionsError, type OptionSources, type OptionSpec } from '@concord/runtime';

/** Group and member ids appear in metrics labels, file names and k8s object names (as in the shard role). */
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const ID_DOC = '1 to 64 letters, digits, "-" or "_"';

/** A host name, an IPv4 address or a bracketed IPv6 address such as [::1]. */
const HOST_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$/;

/** host:port to bind: port 0 picks a free one. */
const LISTEN_PATTERN =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})$/;

/** Separates the replicas of one group in --groups. */
const MEMBER_SEPARATOR = '|';

/** One shard group as configured: its id on the ring and the address of every replica. */
export interface ShardGroupConfig {
  groupId: string;
  /** host:port of every replica, in the order given. */
  addresses: string[];
}

export interface CoordinatorOptions {
  /** Interface to bind, e.g. 127.0.0.1, or ::1 (an IPv6 address without its brackets). */
  listenHost: string;
  /** Port to bind; 0 picks a free one. */
  listenPort: number;
  /** This coordinator's id in the meta group. */
  memberId: string;
  /** Every shard group on the ring, with its replicas. */
  groups: ShardGroupConfig[];
  ringVnodes: number;
  ringEpoch: number;
  /** Deadline of the work done on shards for one client call, when the client's own is later or absent. */
  shardTimeoutMs: number;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** The raw settings as compileOptionSpecs returns them, before --groups is parsed. */
interface RawCoordinatorOptions extends Record<string, unknown> {
  listen: string;
  memberId: string;
  groups: string[];
  ringVnodes: number;
  ringEpoch: number;
  shardTimeout: number;
  logLevel: string;
}

/** Every coordinator setting, in the order `--help` lists them. */
export const COORDINATOR_OPTION_SPECS: { readonly [K in keyof RawCoordinatorOptions]: OptionSpec } = {
  listen: {
    kind: 'string',
    flag: 'listen',
    env: 'CONCORD_LISTEN',
    default: '127.0.0.1:7070',
    doc: 'host:port to serve gRPC on; port 0 picks a free port (the "serving" log line names it).',
    pattern: LISTEN_PATTERN,
    patternDoc: 'host:port with a port from 0 to 65535, e.g. 127.0.0.1:7070 or [::1]:7070',
  },
  memberId: {
    kind: 'string',
    flag: 'member-id',
    env: 'CONCORD_MEMBER_ID',
    default: 'coordinator-0',
    doc: "This coordinator's id in the meta group.",
    pattern: ID_PATTERN,
    patternDoc: ID_DOC,
  },
  groups: {
    kind: 'list',
    flag: 'groups',
    env: 'CONCORD_GROUPS',
    doc: 'Every shard group and its replicas: g1=127.0.0.1:7101,g2=127.0.0.1:7102; several replicas of a group are separated by "|" (g1=10.0.0.1:7101|10.0.0.2:7101).',
  },
  ringVnodes: {
    kind: 'int',
    flag: 'ring-vnodes',
    env: 'CONCORD_RING_VNODES',
    default: DEFAULT_VNODES_PER_GROUP,
    min: 1,
    max: MAX_VNODES_PER_GROUP,
    doc: 'Virtual nodes per group on the ring; every process of the cluster must use the same value.',
  },
  ringEpoch: {
    kind: 'int',
    flag: 'ring-epoch',
    env: 'CONCORD_RING_EPOCH',
    default: 1,
    min: 1,
    doc: 'Epoch of the ring given by --groups; shards holding another epoch answer WRONG_SHARD.',
  },
  shardTimeout: {
    kind: 'duration',
    flag: 'shard-timeout',
    env: 'CONCORD_SHARD_TIMEOUT',
    default: 5000,
    min: 1,
    max: 600_000,
    doc: "Deadline for the shard calls (retries included) that serve one client call; a client's earlier deadline wins.",
  },
  logLevel: {
    kind: 'enum',
    flag: 'log-level',
    env: 'CONCORD_LOG_LEVEL',
    default: 'info',
    values: LOG_LEVELS,
    doc: 'Lowest level of log lines written to stdout.',
  },
};

/**
 * Reads the settings from flags, then environment variables, then defaults, and parses --groups.
 * Throws OptionsError naming the setting and what to fix.
 */
export function compileCoordinatorOptions(sources: OptionSources): CoordinatorOptions {
  const raw = compileOptionSpecs<RawCoordinatorOptions>(COORDINATOR_OPTION_SPECS, sources);
  const { host, port } = splitListen(raw.listen);
  return {
    listenHost: host,
    listenPort: port,
    memberId: raw.memberId,
    groups: parseGroups(raw.groups, groupsOrigin(sources)),
    ringVnodes: raw.ringVnodes,
    ringEpoch: raw.ringEpoch,
    shardTimeoutMs: raw.shardTimeout,
    logLevel: raw.logLevel as CoordinatorOptions['logLevel'],
  };
}

/** Names where --groups came from, phrased as compileOptionSpecs does for its own errors. */
function groupsOrigin(sources: OptionSources): string {
  const fromFlag = sources.argv.some((token) => token === '--groups' || token.startsWith('--groups='));
  return fromFlag ? '--groups' : 'CONCORD_GROUPS (for --groups)';
}

/**
 * Parses the entries of --groups ("g1=host:port|host:port"). A group id or an address listed twice
 * is refused: two groups sharing a replica would each believe they own its keys.
 */
export function parseGroups(entries: readonly string[], origin = '--groups'): ShardGroupConfig[] {
  const fail = (what: string): never => {
    throw new OptionsError(`${origin}: ${what}`);
  };
  if (entries.length === 0) fail('must name at least one shard group, e.g. g1=127.0.0.1:7101');
  const groups: ShardGroupConfig[] = [];
  const groupIds = new Set<string>();
  const owners = new Map<string, string>();
  for (const entry of entries) {
    const equals = entry.indexOf('=');
    if (equals === -1) fail(`each entry must be <group-id>=<host:port>[|<host:port>...] (got ${JSON.stringify(entry)})`);
    const groupId = entry.slice(0, equals).trim();
    if (!ID_PATTERN.test(groupId)) fail(`group id must be ${ID_DOC} (got ${JSON.stringify(groupId)} in ${JSON.stringify(entry)})`);
    if (groupIds.has(groupId)) fail(`group ${groupId} is listed twice`);
    groupIds.add(groupId);
    const addresses = entry
      .slice(equals + 1)
      .split(MEMBER_SEPARATOR)
      .map((address) => address.trim());
    for (const address of addresses) {
      const problem = addressProblem(address);
      if (problem !== undefined) fail(`group ${groupId}: ${problem} (got ${JSON.stringify(address)})`);
      const owner = owners.get(address);
      if (owner !== undefined) fail(owner === groupId ? `group ${groupId} lists ${address} twice` : `${address} is listed for both ${owner} and ${groupId}`);
      owners.set(address, groupId);
    }
    groups.push({ groupId, addresses });
  }
  return groups;
}

/** Why `address` cannot be dialled, or undefined if it is a usable host:port. */
function addressProblem(address: string): string | undefined {
  const colon = address.lastIndexOf(':');
  if (address === '') return 'every replica address must be host:port, none may be empty';
  if (colon <= 0) return 'replica address must be host:port';
  const host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!HOST_PATTERN.test(host)) return 'replica address must start with a host name, an IPv4 address or a bracketed IPv6 address';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) return 'replica port must be from 1 to 65535';
  return undefined;
}

/** Splits a LISTEN_PATTERN-checked "host:port"; IPv6 brackets are removed. */
function splitListen(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(listen.slice(colon + 1)) };
}
