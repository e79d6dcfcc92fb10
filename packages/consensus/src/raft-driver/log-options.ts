// The Raft log settings every role that runs a Raft group exposes, next to --snapshot-every: how
// much a leader may hold uncommitted before it sheds load, and when a large state is snapshotted.
// One wording and one set of limits, so `--help` of a shard and of a coordinator agree.
import type { OptionSpec } from '@concord/runtime';
import { DEFAULT_MAX_UNCOMMITTED_BYTES } from '../raft/config.js';
import { RAFT_DEFAULTS } from './raft-group.js';

/** The largest byte count these settings accept: 1 TiB, far above any memory they bound. */
const MAX_BYTES_SETTING = 2 ** 40;

export const RAFT_LOG_OPTION_SPECS = {
  maxUncommittedBytes: {
    kind: 'int',
    flag: 'max-uncommitted-bytes',
    env: 'CONCORD_MAX_UNCOMMITTED_BYTES',
    default: DEFAULT_MAX_UNCOMMITTED_BYTES,
    min: 0,
    max: MAX_BYTES_SETTING,
    doc:
      'Raft: a leader that holds this many bytes of log entries not committed yet refuses further writes with ' +
      'PROPOSAL_DROPPED (clients back off and retry) until some commit; one write is always accepted when none is ' +
      'pending, whatever its size. Bounds a leader\'s memory when followers or the disk fall behind. 0: no limit.',
  },
  snapshotLogPercent: {
    kind: 'int',
    flag: 'snapshot-log-percent',
    env: 'CONCORD_SNAPSHOT_LOG_PERCENT',
    default: Math.round(RAFT_DEFAULTS.snapshotLogRatio * 100),
    min: 0,
    max: 100_000,
    doc:
      'Raft: once the last snapshot is at least --snapshot-ratio-min-bytes, the next one also waits until the entries ' +
      'applied since add up to this percentage of its size, so that rewriting a large state costs at most 100/percent ' +
      'bytes per byte written. 0: --snapshot-every alone decides.',
  },
  snapshotRatioMinBytes: {
    kind: 'int',
    flag: 'snapshot-ratio-min-bytes',
    env: 'CONCORD_SNAPSHOT_RATIO_MIN_BYTES',
    default: RAFT_DEFAULTS.snapshotRatioMinBytes,
    min: 0,
    max: MAX_BYTES_SETTING,
    doc: 'Raft: the snapshot size from which --snapshot-log-percent applies; smaller states are snapshotted by --snapshot-every alone.',
  },
} as const satisfies Record<string, OptionSpec>;

/** The RaftGroup options these settings set, from their compiled values. */
export function raftLogOptions(raw: { maxUncommittedBytes: number; snapshotLogPercent: number; snapshotRatioMinBytes: number }): {
  maxUncommittedBytes: number;
  snapshotLogRatio: number;
  snapshotRatioMinBytes: number;
} {
  return {
    maxUncommittedBytes: raw.maxUncommittedBytes,
    snapshotLogRatio: raw.snapshotLogPercent / 100,
    snapshotRatioMinBytes: raw.snapshotRatioMinBytes,
  };
}
