import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { runClosedLoop } from './closed-loop.js';
import { formatSummary, ratio, summarize } from './report.js';
import { medianRatios, roundRatios, walAppendsInWindow } from './raft/raft-bench.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('closed loop and report', () => {
  it('counts successes and failures by kind, and opens and closes the window once each', async () => {
    let opened = 0;
    let closed = 0;
    const result = await runClosedLoop({
      concurrency: 4,
      warmupMs: 20,
      durationMs: 150,
      operation: async (worker, sequence) => {
        await nextTurn();
        if (worker === 0 && sequence % 2 === 1) throw Object.assign(new Error('no leader'), { code: status.UNAVAILABLE });
      },
      onWindowStart: () => opened++,
      onWindowEnd: () => closed++,
    });
    assert.equal(opened, 1);
    assert.equal(closed, 1);
    assert.ok(result.ops > 0, 'requests completed in the window');
    assert.ok(result.errors > 0, 'failures are counted, not dropped');
    assert.deepEqual([...result.errorKinds.keys()], ['UNAVAILABLE']);
    assert.match(result.firstError ?? '', /no leader/);
    const summary = summarize(result);
    assert.equal(summary.ops, result.ops);
    assert.equal(summary.error_rate, Number((result.errors / (result.ops + result.errors)).toFixed(4)));
    assert.ok(summary.p50_ms <= summary.p99_ms && summary.p99_ms <= summary.max_ms);
    assert.match(formatSummary(summary), /ops\/s {2}p50 .* ms {2}p99 .* ms {2}errors \d+ \(/);
  });

  it('ratio keeps three significant digits and refuses a missing or zero denominator', () => {
    assert.equal(ratio(2, 3), 0.667);
    assert.equal(ratio(9063, 5357), 1.69);
    assert.equal(ratio(1, 0), undefined);
    assert.equal(ratio(undefined, 2), undefined);
  });

  it('turns two scrapes of the replicas into WAL appends per member and entries per append by role', () => {
    const start = new Map([
      ['concord-g1-0', { appends: 100, entries: 1000, timed: 100, seconds: 0.1 }],
      ['concord-g1-1', { appends: 90, entries: 900, timed: 95, seconds: 0.05 }],
      ['concord-g1-2', { appends: 90, entries: 900, timed: 95, seconds: 0.05 }],
    ]);
    const end = new Map([
      ['concord-g1-0', { appends: 1100, entries: 24_000, timed: 1100, seconds: 1.2 }],
      ['concord-g1-1', { appends: 1090, entries: 23_900, timed: 1095, seconds: 0.75 }],
      ['concord-g1-2', { appends: 1090, entries: 23_900, timed: 1095, seconds: 0.75 }],
    ]);
    const use = walAppendsInWindow(start, end, 'concord-g1-0', 5);
    // The leader: 1000 appends in 5 s of 23 entries each, 1.1 s of writing over 1000 timed appends.
    assert.deepEqual(use['leader'], { per_sec: 200, entries_per_append: 23, ms_per_append: 1.1 });
    // Followers: per member, 2000 appends of 46,000 entries between them, 1.4 s over 2000.
    assert.deepEqual(use['followers'], { per_sec: 200, entries_per_append: 23, ms_per_append: 0.7 });
  });

  it('takes the ratios of each round, then their median per key', () => {
    const round = (concordOps: number, etcdOps: number) =>
      roundRatios([
        { id: 'concord-put-c64', ops_per_sec: concordOps, p50_ms: 8, p99_ms: 40 },
        { id: 'etcd-put-c64', ops_per_sec: etcdOps, p50_ms: 4, p99_ms: 20 },
      ]);
    const rounds = [round(5000, 10_000), round(6000, 8000), round(9000, 9000)];
    assert.equal(rounds[0]?.['put_c64_ops_per_sec_concord_vs_etcd'], 0.5);
    assert.equal(rounds[0]?.['put_c64_p99_concord_vs_etcd'], 2);
    assert.equal('put_c1_ops_per_sec_concord_vs_etcd' in (rounds[0] ?? {}), false, 'scenarios neither system ran have no ratio');
    const medians = medianRatios(rounds);
    // 0.5, 0.75 and 1: the median is the middle one, not the ratio of the summed throughputs.
    assert.equal(medians['put_c64_ops_per_sec_concord_vs_etcd'], 0.75);
    assert.equal(medians['put_c64_p50_concord_vs_etcd'], 2);
    assert.equal(medianRatios([round(5000, 10_000), round(6000, 8000)])['put_c64_ops_per_sec_concord_vs_etcd'], 0.625);
    assert.equal(medianRatios([{ x: undefined }])['x'], undefined);
  });
});
