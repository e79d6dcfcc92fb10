// The coordinator role's settings: one table of flags, environment variables and defaults, compiled
// into a typed CoordinatorOptions. Only src/main.ts calls compileCoordinatorOptions; everything
// below takes options.

import { BOOTSTRAP_GUARD_OPTION_SPECS, RAFT_DEFAULTS, RAFT_LOG_OPTION_SPECS, RAFT_TIMING_OPTION_SPECS, raftLogOptions } from '@concord/consensus';
import { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP } from '@concord/ring';
import {
  COMMON_ROLE_OPTION_SPECS,
  LISTEN_PATTERN,
  compileAdvertise,
  compileOptionSpecs,
  compileTlsOptions,
  ID_DOC,
  ID_PATTERN,
  isWildcardHost,
  LOG_LEVELS,
  OptionsError,
  splitHostPort,
  type OptionSources,
  type OptionSpec,
  type TlsMaterial,
} from '@concord/runtime';
import { addressProblem } from './addresses.js';

/**
 * Where the coordinator keeps the ring and shard-group directory: `raft` replicates them in the
 * meta group of every coordinator (the default); `config` takes them from --groups in this one
 * process, as a single coordinator with nothing to fail over to (development and tests).
 */
export const COORDINATOR_ENGINES = ['raft', 'config'] as const;
export type CoordinatorEngine = (typeof COORDINATOR_ENGINES)[number];


/** Separates the replicas of one group in --groups. */
const MEMBER_SEPARATOR = '|';

/** The meta group's name in Cluster.Status and Cluster.ChangeShardMembership (META_GROUP_ID): no shard group may take it. */
const RESERVED_GROUP_ID = 'meta';

/** One shard group as configured: its id on the ring and the address of every replica. */
export interface ShardGroupConfig {
  groupId: string;
  /** host:port of every replica, in the order given. */
  addresses: string[];
}

export interface CoordinatorOptions {
  /** Interface to bind, e.g. 127.0.0.1, or ::1 (an IPv6 address without its brackets). */
  listenHost: string;
  /** Port to bind; 0 picks a free one (config engine only). */
  listenPort: number;
  /** This coordinator's id in the meta group. */
  memberId: string;
  engine: CoordinatorEngine;
  /**
   * Raft: the meta group's initial members (member id → host:port), this coordinator included;
   * its entry is the address the other coordinators and forwarded calls dial. Read only to
   * bootstrap an empty data dir. Empty with the config engine.
   */
  peers: Record<string, string>;
  /**
   * Raft: this coordinator joins a running meta group. `peers` then lists the group's current
   * members, this one not among them; it starts with no membership, never campaigns, and serves
   * once the leader adds it (Cluster.ChangeShardMembership with group_id "meta").
   */
  join: boolean;
  /**
   * Raft only: with an empty data dir, how long to wait for peers that do not answer yet when asking
   * whether this member belonged to the group before (then it lost its data and refuses to start).
   */
  bootstrapCheckTimeoutMs: number;
  /** Raft only: bootstrap an empty data dir without asking the peers (--force-bootstrap). */
  forceBootstrap: boolean;
  /**
   * host:port the other coordinators and clients dial, named in forwarding hints and Status:
   * --advertise, else with raft its --peers entry (or --listen with --join). Empty with the config
   * engine and no --advertise: the bound address is used.
   */
  advertisedAddress: string;
  /** Raft: folder for the meta group's log and snapshots. Empty with the config engine. */
  dataDir: string;
  /**
   * Every shard group on the ring, with its replicas. With raft they only seed an empty meta
   * group (and may be empty: a member that never leads an empty group needs none).
   */
  groups: ShardGroupConfig[];
  ringVnodes: number;
  ringEpoch: number;
  /** Raft: length of one tick; the timeouts below are counted in ticks. */
  tickMs: number;
  /** Raft: ticks without a leader before a follower campaigns (randomized up to 2×). */
  electionTicks: number;
  /** Raft: ticks between a leader's heartbeats. */
  heartbeatTicks: number;
  /** Raft: fsync the meta log before acknowledging a change. */
  sync: boolean;
  /** Raft: applied entries between snapshots of the meta state. */
  snapshotEvery: number;
  /** Raft: RaftGroupOptions.maxUncommittedBytes (--max-uncommitted-bytes). */
  maxUncommittedBytes: number;
  /** Raft: RaftGroupOptions.snapshotLogRatio (--snapshot-log-percent / 100). */
  snapshotLogRatio: number;
  /** Raft: RaftGroupOptions.snapshotRatioMinBytes (--snapshot-ratio-min-bytes). */
  snapshotRatioMinBytes: number;
  /** Deadline of the work done on shards for one client call, when the client's own is later or absent. */
  shardTimeoutMs: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Where to serve Prometheus metrics on GET /metrics; undefined (the default) serves none. */
  metricsListen?: { host: string; port: number };
  /** Mutual TLS on the server and on every channel this coordinator opens; undefined: plaintext. */
  tls?: TlsMaterial;
}

/** The raw settings as compileOptionSpecs returns them, before cross-field checks. */
interface RawCoordinatorOptions extends Record<string, unknown> {
  listen: string;
  memberId: string;
  engine: string;
  peers: string[];
  join: boolean;
  bootstrapCheckTimeout: number;
  forceBootstrap: boolean;
  dataDir: string;
  groups: string[];
  ringVnodes: number;
  ringEpoch: number;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  sync: boolean;
  snapshotEvery: number;
  maxUncommittedBytes: number;
  snapshotLogPercent: number;
  snapshotRatioMinBytes: number;
  shardTimeout: number;
  logLevel: string;
  metricsListen: string;
  advertise: string;
  tlsCert: string;
  tlsKey: string;
  tlsCa: string;
}

/** Every coordinator setting, in the order `--help` lists them. */
export const COORDINATOR_OPTION_SPECS: { readonly [K in keyof RawCoordinatorOptions]: OptionSpec } = {
  listen: {
    kind: 'string',
    flag: 'listen',
    env: 'CONCORD_LISTEN',
    default: '127.0.0.1:7070',
    doc:
      'host:port to serve gRPC on: the public services and, with raft, the meta group\'s consensus peer service. With raft its port ' +
      "must be this coordinator's --peers port; with config, port 0 picks a free port (the \"serving\" log line names it).",
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
  engine: {
    kind: 'enum',
    flag: 'engine',
    env: 'CONCORD_ENGINE',
    default: 'raft',
    values: COORDINATOR_ENGINES,
    doc:
      'Where the ring and shard-group directory live: raft (replicated in the meta group of the coordinators of --peers; followers ' +
      'forward client calls to its leader) or config (taken from --groups by this one process; for development and tests).',
  },
  peers: {
    kind: 'list',
    flag: 'peers',
    env: 'CONCORD_PEERS',
    default: [],
    doc:
      "Raft: the meta group's initial members as <member-id>=<host:port>,..., the same on every founding coordinator and including " +
      "this one's --member-id; its entry is the address the other coordinators dial (--listen must use its port). Required with " +
      '--engine raft. Read only to bootstrap an empty data dir: once the data dir holds Raft state, membership comes from the ' +
      'replicated log and this setting is ignored. With --join: the members of the running meta group, without this coordinator.',
  },
  join: {
    kind: 'bool',
    flag: 'join',
    env: 'CONCORD_JOIN',
    default: false,
    doc:
      'Raft: start as a new, empty member of a running meta group (to replace a lost coordinator). --peers then lists the ' +
      'current members (this coordinator not among them) and --listen (or --advertise, when given) is the address they dial ' +
      '(a host they can reach, not port 0). The coordinator waits, without campaigning, until the group adds it (concord ' +
      'member add meta <member-id> <that address>), then catches up. Ignored once the data dir holds Raft state.',
  },
  dataDir: {
    kind: 'string',
    flag: 'data-dir',
    env: 'CONCORD_DATA_DIR',
    default: '',
    doc: "Raft: folder for the meta group's write-ahead log and snapshots; created if missing. Required with --engine raft.",
  },
  groups: {
    kind: 'list',
    flag: 'groups',
    env: 'CONCORD_GROUPS',
    default: [],
    doc:
      'Every shard group and its replicas: g1=127.0.0.1:7101,g2=127.0.0.1:7102; several replicas of a group are separated by "|" ' +
      '(g1=10.0.0.1:7101|10.0.0.2:7101). Required with --engine config. With raft it only seeds an empty meta group (with ' +
      '--ring-vnodes and --ring-epoch): once the meta group holds a ring, the replicated one is served and a difference is logged.',
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
  ...BOOTSTRAP_GUARD_OPTION_SPECS,
  ...RAFT_TIMING_OPTION_SPECS,
  sync: {
    kind: 'bool',
    flag: 'sync',
    env: 'CONCORD_SYNC',
    default: true,
    doc: 'Raft: fsync the meta log before acknowledging a change. --sync=false can lose acknowledged changes on a crash: for tests only.',
  },
  snapshotEvery: {
    kind: 'int',
    flag: 'snapshot-every',
    env: 'CONCORD_SNAPSHOT_EVERY',
    default: RAFT_DEFAULTS.snapshotEvery,
    min: 1,
    doc: 'Raft: take a snapshot of the meta state and compact its log after this many applied log entries.',
  },
  ...RAFT_LOG_OPTION_SPECS,
  shardTimeout: {
    kind: 'duration',
    flag: 'shard-timeout',
    env: 'CONCORD_SHARD_TIMEOUT',
    default: 5000,
    min: 1,
    max: 600_000,
    doc: "Deadline for the shard calls (retries included) that serve one client call; a client's earlier deadline wins.",
  },
  ...COMMON_ROLE_OPTION_SPECS,
};

/**
 * Reads the settings from flags, then environment variables, then defaults, parses --groups and
 * --peers, and checks what one setting alone cannot. Throws OptionsError naming the setting and
 * what to fix.
 */
export function compileCoordinatorOptions(sources: OptionSources): CoordinatorOptions {
  const raw = compileOptionSpecs<RawCoordinatorOptions>(COORDINATOR_OPTION_SPECS, sources);
  const { host, port } = splitHostPort(raw.listen);
  const metricsListen = raw.metricsListen === '' ? undefined : splitHostPort(raw.metricsListen);
  if (metricsListen !== undefined && metricsListen.port !== 0 && metricsListen.port === port && metricsListen.host === host) {
    throw new OptionsError(`${originOf(sources, COORDINATOR_OPTION_SPECS.metricsListen)}: must differ from --listen ${raw.listen}, where gRPC is served`);
  }
  const engine = raw.engine as CoordinatorEngine;
  const groupsOrigin = originOf(sources, COORDINATOR_OPTION_SPECS.groups);
  const peersOrigin = originOf(sources, COORDINATOR_OPTION_SPECS.peers);
  const dataDirOrigin = originOf(sources, COORDINATOR_OPTION_SPECS.dataDir);
  // Parsed first, for either engine: a malformed entry is reported as such whatever else is missing.
  const groups = raw.groups.length === 0 ? [] : parseGroups(raw.groups, groupsOrigin);
  let peers: Record<string, string> = {};
  const advertise = compileAdvertise(raw.advertise, sources);
  const advertiseOrigin = originOf(sources, COORDINATOR_OPTION_SPECS.advertise);
  let advertisedAddress = advertise;
  const listenOrigin = originOf(sources, COORDINATOR_OPTION_SPECS.listen);
  if (engine === 'raft' && raw.join) {
    peers = parsePeers(raw.peers, peersOrigin, raw.memberId, 'join');
    if (port === 0) {
      throw new OptionsError(
        `${listenOrigin}: port 0 cannot be used with --join: the other coordinators dial this one at its advertised address, which the leader is told when it adds it`,
      );
    }
    if (advertise === '' && isWildcardHost(host)) {
      throw new OptionsError(
        `${listenOrigin}: with --join, --listen is the address the other coordinators dial unless --advertise names another, ` +
          `so give --advertise <host:port> (e.g. <pod>.<service>:${port}) or listen on a reachable host, not ${host} (got ${raw.listen})`,
      );
    }
    if (advertise === '') advertisedAddress = raw.listen;
    if (Object.values(peers).includes(advertisedAddress)) {
      throw new OptionsError(
        `${advertise === '' ? listenOrigin : advertiseOrigin}: ${advertisedAddress} is the address of a current member in --peers; a new coordinator needs an address of its own`,
      );
    }
  } else if (engine === 'raft') {
    peers = parsePeers(raw.peers, peersOrigin, raw.memberId);
    // The meta group records each member's --peers address when it bootstraps; advertising another
    // would leave hints and Status naming an address the log does not know (as etcd checks
    // --initial-advertise-peer-urls against --initial-cluster).
    if (advertise !== '' && advertise !== peers[raw.memberId]) {
      throw new OptionsError(
        `${advertiseOrigin}: must be this coordinator's --peers address ${peers[raw.memberId]!}, the one the meta group records for it, or be left out (got ${advertise})`,
      );
    }
    advertisedAddress = peers[raw.memberId]!;
    const own = splitHostPort(peers[raw.memberId]!);
    if (port === 0) {
      throw new OptionsError(
        `${listenOrigin}: port 0 cannot be used with --engine raft: the other coordinators dial this one at its --peers address ` +
          `${peers[raw.memberId]!}, so listen on port ${own.port} (e.g. --listen ${host.includes(':') ? `[${host}]` : host}:${own.port})`,
      );
    }
    // An explicit --advertise says the address is reachable however ports are mapped on the way.
    if (port !== own.port && advertise === '') {
      throw new OptionsError(
        `${listenOrigin}: port ${port} differs from this coordinator's --peers address ${peers[raw.memberId]!}; the other coordinators dial that address ` +
          `(if a port mapping makes this coordinator reachable there, say so with --advertise), so listen on port ${own.port}`,
      );
    }
  }
  if (engine === 'raft') {
    if (raw.dataDir === '') {
      throw new OptionsError(`${dataDirOrigin}: required with --engine raft: the folder for the meta group's log and snapshots (e.g. --data-dir .concord/${raw.memberId})`);
    }
    if (raw.heartbeatTicks >= raw.electionTicks) {
      throw new OptionsError(
        `${originOf(sources, COORDINATOR_OPTION_SPECS.heartbeatTicks)}: must be less than --election-ticks (${raw.electionTicks}), so followers hear several heartbeats per election timeout (got ${raw.heartbeatTicks})`,
      );
    }
  } else {
    if (raw.peers.length > 0) throw new OptionsError(`${peersOrigin}: only the raft engine has peers; remove it, or use --engine raft (got --engine ${engine})`);
    if (raw.join) {
      throw new OptionsError(
        `${originOf(sources, COORDINATOR_OPTION_SPECS.join)}: only a raft coordinator can join a meta group; remove it, or use --engine raft (got --engine ${engine})`,
      );
    }
    if (raw.dataDir !== '') {
      throw new OptionsError(`${dataDirOrigin}: the config engine keeps no data; remove it, or use --engine raft (got --engine ${engine})`);
    }
    if (groups.length === 0) {
      throw new OptionsError(
        `${groupsOrigin}: required with --engine config: every shard group and its replicas, e.g. g1=127.0.0.1:7101,g2=127.0.0.1:7102`,
      );
    }
  }
  const tls = compileTlsOptions(raw, sources);
  return {
    listenHost: host,
    listenPort: port,
    memberId: raw.memberId,
    engine,
    peers,
    join: engine === 'raft' && raw.join,
    bootstrapCheckTimeoutMs: raw.bootstrapCheckTimeout,
    forceBootstrap: raw.forceBootstrap,
    advertisedAddress,
    dataDir: raw.dataDir,
    groups,
    ringVnodes: raw.ringVnodes,
    ringEpoch: raw.ringEpoch,
    tickMs: raw.tickMs,
    electionTicks: raw.electionTicks,
    heartbeatTicks: raw.heartbeatTicks,
    sync: raw.sync,
    snapshotEvery: raw.snapshotEvery,
    ...raftLogOptions(raw),
    shardTimeoutMs: raw.shardTimeout,
    logLevel: raw.logLevel as CoordinatorOptions['logLevel'],
    ...(metricsListen !== undefined ? { metricsListen } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/** Names where a setting came from, phrased as compileOptionSpecs does for its own errors. */
function originOf(sources: OptionSources, spec: OptionSpec): string {
  const flag = `--${spec.flag}`;
  const fromFlag = sources.argv.some((token) => token === flag || token.startsWith(`${flag}=`));
  if (fromFlag || spec.env === undefined) return flag;
  const fromEnv = sources.env[spec.env];
  return fromEnv !== undefined && fromEnv !== '' ? `${spec.env} (for ${flag})` : flag;
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
    if (groupId === RESERVED_GROUP_ID) {
      fail(`group id ${RESERVED_GROUP_ID} is reserved for the coordinators' meta group (concord status, concord member … ${RESERVED_GROUP_ID}); name the shard group otherwise`);
    }
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

/**
 * Parses --peers entries ("coordinator-0=127.0.0.1:7070"). Ids and addresses must be distinct: two
 * members on one address would receive each other's messages. A founding coordinator must be one
 * of them, or it would start as a member waiting to be added and never serve; a joining one
 * (`mode` "join") must not be, or it would found a group of its own.
 */
export function parsePeers(entries: readonly string[], origin: string, memberId: string, mode: 'found' | 'join' = 'found'): Record<string, string> {
  const fail = (what: string): never => {
    throw new OptionsError(`${origin}: ${what}`);
  };
  if (entries.length === 0 && mode === 'join') {
    fail(
      `required with --join: the running meta group's current members as <member-id>=<host:port>,..., without this coordinator (--member-id ${memberId}), ` +
        `e.g. coordinator-1=127.0.0.1:7071,coordinator-2=127.0.0.1:7072`,
    );
  }
  if (entries.length === 0) {
    fail(
      `required with --engine raft: the meta group's initial members as <member-id>=<host:port>,..., this coordinator (--member-id ${memberId}) included, ` +
        `e.g. coordinator-0=127.0.0.1:7070,coordinator-1=127.0.0.1:7071,coordinator-2=127.0.0.1:7072`,
    );
  }
  // A Map, then Object.fromEntries: an id such as "__proto__" becomes an own property, not a prototype.
  const peers = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const entry of entries) {
    const equals = entry.indexOf('=');
    if (equals === -1) fail(`each entry must be <member-id>=<host:port> (got ${JSON.stringify(entry)})`);
    const id = entry.slice(0, equals).trim();
    const address = entry.slice(equals + 1).trim();
    if (!ID_PATTERN.test(id)) fail(`member id must be ${ID_DOC} (got ${JSON.stringify(id)} in ${JSON.stringify(entry)})`);
    if (peers.has(id)) fail(`member ${id} is listed twice`);
    if (addressProblem(address) !== undefined) {
      fail(`member ${id}: address must be host:port with a port from 1 to 65535, e.g. 127.0.0.1:7070 (got ${JSON.stringify(address)})`);
    }
    const owner = owners.get(address);
    if (owner !== undefined) fail(`${address} is listed for both ${owner} and ${id}`);
    owners.set(address, id);
    peers.set(id, address);
  }
  if (mode === 'join' && peers.has(memberId)) {
    fail(
      `with --join, must list the running meta group's current members without this coordinator; ${memberId} is listed (drop --join to found a new meta group instead)`,
    );
  }
  if (mode === 'found' && !peers.has(memberId)) {
    fail(
      `must include this coordinator's --member-id ${JSON.stringify(memberId)} (got ${[...peers.keys()].join(',')}); ` +
        'to add a new coordinator to a running meta group, start it with --join',
    );
  }
  return Object.fromEntries(peers);
}
