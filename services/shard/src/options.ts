// The shard role's settings: one table of flags, environment variables and defaults, compiled into
// a typed ShardOptions. Only src/main.ts calls compileShardOptions; everything below takes options.

import { compileOptionSpecs, LOG_LEVELS, OptionsError, type OptionSources, type OptionSpec } from '@concord/runtime';
import { DEFAULT_SNAPSHOT_EVERY, type EngineName } from '@concord/consensus';
import { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP } from '@concord/ring';

/** Engines the shard role can run today; raft and multipaxos join this list when they exist. */
export const SHARD_ENGINES = ['single'] as const satisfies readonly EngineName[];
export type ShardEngine = (typeof SHARD_ENGINES)[number];

/** Group and member ids appear in metrics labels, file names and k8s object names. */
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const ID_DOC = '1 to 64 letters, digits, "-" or "_"';

/**
 * host:port with a port from 0 to 65535 (0 picks a free port). The host is a name, an IPv4
 * address or a bracketed IPv6 address such as [::1].
 */
const LISTEN_PATTERN =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})$/;

export interface ShardOptions {
  /** The shard group this replica belongs to; also its name on the ring. */
  groupId: string;
  /** This replica's id within its group. */
  memberId: string;
  /** Interface to bind, e.g. 127.0.0.1, or ::1 (an IPv6 address without its brackets). */
  listenHost: string;
  /** Port to bind; 0 picks a free one. */
  listenPort: number;
  /** Folder for the group's log and snapshots. */
  dataDir: string;
  /** Every shard group on the ring this replica routes with. */
  ringGroups: string[];
  ringVnodes: number;
  ringEpoch: number;
  engine: ShardEngine;
  /** fsync every log append before acknowledging a write. */
  sync: boolean;
  /** Applied entries between snapshots (each snapshot compacts the log). */
  snapshotEvery: number;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** The raw settings as compileOptionSpecs returns them, before cross-field checks. */
interface RawShardOptions extends Record<string, unknown> {
  groupId: string;
  memberId: string;
  listen: string;
  dataDir: string;
  ringGroups: string[];
  ringVnodes: number;
  ringEpoch: number;
  engine: string;
  sync: boolean;
  snapshotEvery: number;
  logLevel: string;
}

/** Every shard setting, in the order `--help` lists them. */
export const SHARD_OPTION_SPECS: { readonly [K in keyof RawShardOptions]: OptionSpec } = {
  groupId: {
    kind: 'string',
    flag: 'group-id',
    env: 'CONCORD_GROUP_ID',
    doc: 'The shard group this replica belongs to (its name on the ring).',
    pattern: ID_PATTERN,
    patternDoc: ID_DOC,
  },
  memberId: {
    kind: 'string',
    flag: 'member-id',
    env: 'CONCORD_MEMBER_ID',
    default: '',
    doc: "This replica's id in its group; empty means <group-id>-0.",
    pattern: /^(?:[A-Za-z0-9_-]{1,64})?$/,
    patternDoc: ID_DOC,
  },
  listen: {
    kind: 'string',
    flag: 'listen',
    env: 'CONCORD_LISTEN',
    default: '127.0.0.1:0',
    doc: 'host:port to serve gRPC on; port 0 picks a free port (the "serving" log line names it).',
    pattern: LISTEN_PATTERN,
    patternDoc: 'host:port with a port from 0 to 65535, e.g. 127.0.0.1:7100 or [::1]:7100',
  },
  dataDir: {
    kind: 'string',
    flag: 'data-dir',
    env: 'CONCORD_DATA_DIR',
    doc: "Folder for the group's write-ahead log and snapshots; created if missing.",
    pattern: /^.+$/,
    patternDoc: 'a non-empty path',
  },
  ringGroups: {
    kind: 'list',
    flag: 'ring-groups',
    env: 'CONCORD_RING_GROUPS',
    doc: 'Every shard group on the ring, comma-separated; must include --group-id.',
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
    doc: 'Epoch of the ring given by --ring-groups; requests routed with another epoch get WRONG_SHARD.',
  },
  engine: {
    kind: 'enum',
    flag: 'engine',
    env: 'CONCORD_ENGINE',
    default: 'single',
    values: SHARD_ENGINES,
    doc: 'Consensus engine of the group: single (one replica, write-ahead log only).',
  },
  sync: {
    kind: 'bool',
    flag: 'sync',
    env: 'CONCORD_SYNC',
    default: true,
    doc: 'fsync the log before acknowledging a write. --sync=false can lose acknowledged writes on a crash: for tests only.',
  },
  snapshotEvery: {
    kind: 'int',
    flag: 'snapshot-every',
    env: 'CONCORD_SNAPSHOT_EVERY',
    default: DEFAULT_SNAPSHOT_EVERY,
    min: 1,
    doc: 'Take a snapshot and compact the log after this many applied writes.',
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
 * Reads the settings from flags, then environment variables, then defaults, and checks what one
 * setting alone cannot (the ring must include this group). Throws OptionsError naming the setting.
 */
export function compileShardOptions(sources: OptionSources): ShardOptions {
  const raw = compileOptionSpecs<RawShardOptions>(SHARD_OPTION_SPECS, sources);
  const ringGroups = raw.ringGroups;
  if (ringGroups.length === 0) throw new OptionsError('--ring-groups: must name at least one shard group');
  const seen = new Set<string>();
  for (const groupId of ringGroups) {
    if (!ID_PATTERN.test(groupId)) {
      throw new OptionsError(`--ring-groups: each group id must be ${ID_DOC} (got ${JSON.stringify(groupId)})`);
    }
    if (seen.has(groupId)) throw new OptionsError(`--ring-groups: group ${JSON.stringify(groupId)} is listed twice`);
    seen.add(groupId);
  }
  if (!seen.has(raw.groupId)) {
    throw new OptionsError(
      `--ring-groups: must include this replica's --group-id ${JSON.stringify(raw.groupId)} (got ${ringGroups.join(',')})`,
    );
  }
  const { host, port } = splitHostPort(raw.listen);
  return {
    groupId: raw.groupId,
    memberId: raw.memberId === '' ? `${raw.groupId}-0` : raw.memberId,
    listenHost: host,
    listenPort: port,
    dataDir: raw.dataDir,
    ringGroups,
    ringVnodes: raw.ringVnodes,
    ringEpoch: raw.ringEpoch,
    engine: raw.engine as ShardEngine,
    sync: raw.sync,
    snapshotEvery: raw.snapshotEvery,
    logLevel: raw.logLevel as ShardOptions['logLevel'],
  };
}

/** Splits a LISTEN_PATTERN-checked "host:port"; IPv6 brackets are removed. */
function splitHostPort(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(listen.slice(colon + 1)) };
}
