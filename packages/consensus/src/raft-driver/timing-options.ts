// The Raft timing settings every role that runs a Raft group exposes, with one wording and one set
// of limits, so `--help` of a shard and of a coordinator describe the same knobs the same way.
import type { OptionSpec } from '@concord/runtime';
import { RAFT_DEFAULTS } from './raft-group.js';

export const RAFT_TIMING_OPTION_SPECS = {
  tickMs: {
    kind: 'int',
    flag: 'tick-ms',
    env: 'CONCORD_TICK_MS',
    default: RAFT_DEFAULTS.tickMs,
    min: 1,
    max: 60_000,
    doc: 'Raft: length of one tick in milliseconds; the timeouts below are counted in ticks.',
  },
  electionTicks: {
    kind: 'int',
    flag: 'election-ticks',
    env: 'CONCORD_ELECTION_TICKS',
    default: RAFT_DEFAULTS.electionTicks,
    min: 2,
    max: 10_000,
    doc:
      'Raft: election timeout in ticks. A follower that hears no leader for --election-ticks × --tick-ms, randomized up to ' +
      'twice that (0.5–1 s by default), campaigns; a leader that hears no majority for as long steps down.',
  },
  heartbeatTicks: {
    kind: 'int',
    flag: 'heartbeat-ticks',
    env: 'CONCORD_HEARTBEAT_TICKS',
    default: RAFT_DEFAULTS.heartbeatTicks,
    min: 1,
    max: 10_000,
    doc: 'Raft: a leader sends heartbeats every this many ticks; must be less than --election-ticks.',
  },
} as const satisfies Record<string, OptionSpec>;
