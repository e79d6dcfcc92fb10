// The shard role's settings: one table of flags, environment variables and defaults, compiled into
// a typed ShardOptions. Only src/main.ts calls compileShardOptions; everything below takes options.

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
import {
  BOOTSTRAP_GUARD_OPTION_SPECS,
  DEFAULT_SNAPSHOT_EVERY,
  RAFT_DEFAULTS,
  RAFT_LOG_OPTION_SPECS,
  RAFT_TIMING_OPTION_SPECS,
  raftLogOptions,
  type EngineName,
} from '@concord/consensus';
import { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP } from '@concord/ring';

/** Engines the shard role can run today, the default first; multipaxos joins this list when it exists. */
export const SHARD_ENGINES = ['raft', 'single'] as const satisfies readonly EngineName[];
export type ShardEngine = (typeof SHARD_ENGINES)[number];



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
  /**
   * Raft only: the group's initial members (member id → host:port), this replica included; its own
   * entry is the address peers and clients dial. Read only to bootstrap an empty data dir. Empty
   * for the single engine.
   */
  peers: Record<string, string>;
  /**
   * Raft only: this replica joins a running group. `peers` then lists the group's current members,
   * this replica not among them; it starts with no membership, never campaigns, and serves once the
   * leader adds it (Shard.ChangeMembership ADD_LEARNER with `advertisedAddress`).
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
   * host:port the other members and clients dial, named in leader hints and Status: --advertise,
   * else with raft its --peers entry (or --listen with --join). Empty with the single engine and no
   * --advertise: the bound address is used.
   */
  advertisedAddress: string;
  /** Raft only: length of one tick; timeouts below are counted in ticks. */
  tickMs: number;
  /** Raft only: ticks without a leader before a follower campaigns (randomized up to 2×). */
  electionTicks: number;
  /** Raft only: ticks between a leader's heartbeats. */
  heartbeatTicks: number;
  /** Raft only: how linearizable reads confirm leadership (see SHARD_READ_MODES). */
  readMode: ShardReadMode;
  /** fsync every log append before acknowledging a write. */
  sync: boolean;
  /** Applied entries between snapshots (each snapshot compacts the log). */
  snapshotEvery: number;
  /** Raft only: RaftGroupOptions.maxUncommittedBytes (--max-uncommitted-bytes). */
  maxUncommittedBytes: number;
  /** Raft only: RaftGroupOptions.snapshotLogRatio (--snapshot-log-percent / 100). */
  snapshotLogRatio: number;
  /** Raft only: RaftGroupOptions.snapshotRatioMinBytes (--snapshot-ratio-min-bytes). */
  snapshotRatioMinBytes: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Where to serve Prometheus metrics on GET /metrics; undefined (the default) serves none. */
  metricsListen?: { host: string; port: number };
  /** Mutual TLS on the server and on every channel this replica opens; undefined: plaintext. */
  tls?: TlsMaterial;
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
  peers: string[];
  join: boolean;
  bootstrapCheckTimeout: number;
  forceBootstrap: boolean;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  readMode: string;
  sync: boolean;
  snapshotEvery: number;
  maxUncommittedBytes: number;
  snapshotLogPercent: number;
  snapshotRatioMinBytes: number;
  logLevel: string;
  metricsListen: string;
  advertise: string;
  tlsCert: string;
  tlsKey: string;
  tlsCa: string;
}

/**
 * safe: every linearizable read confirms leadership with a heartbeat round to a majority (ReadIndex,
 * Raft thesis §6.4). lease: the leader answers from its lease (thesis §6.4.1) while it heard from a
 * majority within the last election timeout minus a safety margin of max(1, ⌈election-ticks / 5⌉)
 * ticks — correct only while the tick rates of any two replicas differ by less than about 20% and
 * no replica pauses (GC, VM stall) longer than that margin; use safe where that cannot be bounded.
 */
export const SHARD_READ_MODES = ['safe', 'lease'] as const;
export type ShardReadMode = (typeof SHARD_READ_MODES)[number];

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
    default: 'raft',
    values: SHARD_ENGINES,
    doc: 'Consensus engine of the group: raft (replicated over the members of --peers) or single (one replica, write-ahead log only; for development and tests).',
  },
  peers: {
    kind: 'list',
    flag: 'peers',
    env: 'CONCORD_PEERS',
    default: [],
    doc:
      "Raft: the group's initial members as <member-id>=<host:port>,..., the same on every founding member and including this " +
      "replica's --member-id; its entry is the address peers and clients dial (--listen must use its port). Required with " +
      '--engine raft. Read only to bootstrap an empty data dir: once the data dir holds Raft state, membership comes from the ' +
      'replicated log and this setting is ignored. With --join: the members of the running group, without this replica.',
  },
  join: {
    kind: 'bool',
    flag: 'join',
    env: 'CONCORD_JOIN',
    default: false,
    doc:
      'Raft: start as a new, empty replica of a running group. --peers then lists the current members (this replica not among ' +
      'them) and --listen is the address they dial (a host they can reach, not port 0). The replica waits, without ' +
      'campaigning, until the group adds it (concord member add), then catches up. Ignored once the data dir holds Raft state.',
  },
  ...BOOTSTRAP_GUARD_OPTION_SPECS,
  ...RAFT_TIMING_OPTION_SPECS,
  readMode: {
    kind: 'enum',
    flag: 'read-mode',
    env: 'CONCORD_READ_MODE',
    default: 'safe',
    values: SHARD_READ_MODES,
    doc:
      'Raft: how linearizable reads confirm leadership. safe: a heartbeat round to a majority per batch of reads (ReadIndex). ' +
      'lease: no round while the leader holds its lease (election timeout minus max(1, election-ticks/5) ticks); ' +
      'correct only if replica clocks drift less than about 20% and no replica stalls longer than that margin.',
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
    doc: 'Take a snapshot and compact the log after this many applied log entries.',
  },
  ...RAFT_LOG_OPTION_SPECS,
  ...COMMON_ROLE_OPTION_SPECS,
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
  const metricsListen = raw.metricsListen === '' ? undefined : splitHostPort(raw.metricsListen);
  if (metricsListen !== undefined && metricsListen.port !== 0 && metricsListen.port === port && metricsListen.host === host) {
    throw new OptionsError(`${originOf(sources, SHARD_OPTION_SPECS.metricsListen)}: must differ from --listen ${raw.listen}, where gRPC is served`);
  }
  const memberId = raw.memberId === '' ? `${raw.groupId}-0` : raw.memberId;
  const engine = raw.engine as ShardEngine;
  const peersOrigin = originOf(sources, SHARD_OPTION_SPECS.peers);
  const advertise = compileAdvertise(raw.advertise, sources);
  const advertiseOrigin = originOf(sources, SHARD_OPTION_SPECS.advertise);
  let peers: Record<string, string> = {};
  let advertisedAddress = advertise;
  const listenOrigin = originOf(sources, SHARD_OPTION_SPECS.listen);
  if (engine === 'raft' && raw.join) {
    peers = parsePeers(raw.peers, peersOrigin, memberId, 'join');
    if (port === 0) {
      throw new OptionsError(
        `${listenOrigin}: port 0 cannot be used with --join: the group's members dial this replica at its advertised address, which the leader is told when it adds it`,
      );
    }
    if (advertise === '' && isWildcardHost(host)) {
      throw new OptionsError(
        `${listenOrigin}: with --join, --listen is the address the other members dial unless --advertise names another, ` +
          `so give --advertise <host:port> (e.g. <pod>.<service>:${port}) or listen on a reachable host, not ${host} (got ${raw.listen})`,
      );
    }
    if (advertise === '') advertisedAddress = raw.listen;
    if (Object.values(peers).includes(advertisedAddress)) {
      throw new OptionsError(
        `${advertise === '' ? listenOrigin : advertiseOrigin}: ${advertisedAddress} is the address of a current member in --peers; a new replica needs an address of its own`,
      );
    }
    if (raw.heartbeatTicks >= raw.electionTicks) {
      throw new OptionsError(
        `${originOf(sources, SHARD_OPTION_SPECS.heartbeatTicks)}: must be less than --election-ticks (${raw.electionTicks}), so followers hear several heartbeats per election timeout (got ${raw.heartbeatTicks})`,
      );
    }
  } else if (engine === 'raft') {
    peers = parsePeers(raw.peers, peersOrigin, memberId);
    // The group records each member's --peers address when it bootstraps; advertising another
    // would leave hints and Status naming an address the log does not know (as etcd checks
    // --initial-advertise-peer-urls against --initial-cluster).
    if (advertise !== '' && advertise !== peers[memberId]) {
      throw new OptionsError(
        `${advertiseOrigin}: must be this replica's --peers address ${peers[memberId]!}, the one its group records for it, or be left out (got ${advertise})`,
      );
    }
    advertisedAddress = peers[memberId]!;
    const own = splitHostPort(peers[memberId]!);
    if (port === 0) {
      throw new OptionsError(
        `${listenOrigin}: port 0 cannot be used with --engine raft: the other members and clients dial this replica at its --peers address ` +
          `${peers[memberId]!}, so listen on port ${own.port} (e.g. --listen ${host.includes(':') ? `[${host}]` : host}:${own.port})`,
      );
    }
    // An explicit --advertise says the address is reachable however ports are mapped on the way.
    if (port !== own.port && advertise === '') {
      throw new OptionsError(
        `${listenOrigin}: port ${port} differs from this replica's --peers address ${peers[memberId]!}; the other members and clients dial that address ` +
          `(if a port mapping makes this replica reachable there, say so with --advertise), so listen on port ${own.port}`,
      );
    }
    if (raw.heartbeatTicks >= raw.electionTicks) {
      throw new OptionsError(
        `${originOf(sources, SHARD_OPTION_SPECS.heartbeatTicks)}: must be less than --election-ticks (${raw.electionTicks}), so followers hear several heartbeats per election timeout (got ${raw.heartbeatTicks})`,
      );
    }
  } else if (raw.peers.length > 0) {
    throw new OptionsError(`${peersOrigin}: only the raft engine has peers; remove it, or use --engine raft (got --engine ${engine})`);
  } else if (raw.join) {
    throw new OptionsError(`${originOf(sources, SHARD_OPTION_SPECS.join)}: only a raft replica can join a group; remove it, or use --engine raft (got --engine ${engine})`);
  }
  const tls = compileTlsOptions(raw, sources);
  return {
    groupId: raw.groupId,
    memberId,
    listenHost: host,
    listenPort: port,
    dataDir: raw.dataDir,
    ringGroups,
    ringVnodes: raw.ringVnodes,
    ringEpoch: raw.ringEpoch,
    engine,
    peers,
    join: engine === 'raft' && raw.join,
    bootstrapCheckTimeoutMs: raw.bootstrapCheckTimeout,
    forceBootstrap: raw.forceBootstrap,
    advertisedAddress,
    tickMs: raw.tickMs,
    electionTicks: raw.electionTicks,
    heartbeatTicks: raw.heartbeatTicks,
    readMode: raw.readMode as ShardReadMode,
    sync: raw.sync,
    snapshotEvery: raw.snapshotEvery,
    ...raftLogOptions(raw),
    logLevel: raw.logLevel as ShardOptions['logLevel'],
    ...(metricsListen !== undefined ? { metricsListen } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/**
 * Parses --peers entries ("g1-0=127.0.0.1:7101"). Ids and addresses must be distinct: two members
 * on one address would receive each other's messages. This replica must be one of them, or it
 * would start as a member waiting to be added and never serve.
 */
export function parsePeers(
  entries: readonly string[],
  origin: string,
  memberId: string,
  mode: 'found' | 'join' = 'found',
): Record<string, string> {
  const fail = (what: string): never => {
    throw new OptionsError(`${origin}: ${what}`);
  };
  if (entries.length === 0 && mode === 'join') {
    fail(
      `required with --join: the running group's current members as <member-id>=<host:port>,..., without this replica (--member-id ${memberId}), ` +
        `e.g. g1-0=127.0.0.1:7101,g1-1=127.0.0.1:7102`,
    );
  }
  if (entries.length === 0) {
    fail(
      `required with --engine raft: the group's initial members as <member-id>=<host:port>,..., this replica (--member-id ${memberId}) included, ` +
        `e.g. ${memberId}=127.0.0.1:7101,<other-id>=127.0.0.1:7102,<third-id>=127.0.0.1:7103`,
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
    if (!LISTEN_PATTERN.test(address) || splitHostPort(address).port === 0) {
      fail(`member ${id}: address must be host:port with a port from 1 to 65535, e.g. 127.0.0.1:7101 (got ${JSON.stringify(address)})`);
    }
    const owner = owners.get(address);
    if (owner !== undefined) fail(`${address} is listed for both ${owner} and ${id}`);
    owners.set(address, id);
    peers.set(id, address);
  }
  if (mode === 'join' && peers.has(memberId)) {
    fail(
      `with --join, must list the running group's current members without this replica; ${memberId} is listed (drop --join to found a new group instead)`,
    );
  }
  if (mode === 'found' && !peers.has(memberId)) {
    fail(
      `must include this replica's --member-id ${JSON.stringify(memberId)} (got ${[...peers.keys()].join(',')}); ` +
        'to add a new replica to a running group, start it with --join',
    );
  }
  return Object.fromEntries(peers);
}

/** Names where a setting came from, phrased as compileOptionSpecs does for its own errors. */
function originOf(sources: OptionSources, spec: OptionSpec): string {
  const flag = `--${spec.flag}`;
  const fromFlag = sources.argv.some((token) => token === flag || token.startsWith(`${flag}=`));
  if (fromFlag || spec.env === undefined) return flag;
  const fromEnv = sources.env[spec.env];
  return fromEnv !== undefined && fromEnv !== '' ? `${spec.env} (for ${flag})` : flag;
}
