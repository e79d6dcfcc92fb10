import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'hdr-histogram-js';
import type { ClosedLoopResult } from '../closed-loop.js';
import { mergeLoops, shareOut } from './client-threads.js';

function loop(ops: number, latencies: number[], errorKinds: [string, number][] = [], firstError?: string): ClosedLoopResult {
  const latencyUs = build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  for (const value of latencies) latencyUs.recordValue(value);
  return { ops, errors: errorKinds.reduce((sum, [, count]) => sum + count, 0), windowMs: 1000, latencyUs, errorKinds: new Map(errorKinds), firstError };
}

describe('the load on several client threads', () => {
  it('shares the requests in flight out evenly, never giving a thread none', () => {
    assert.deepEqual(shareOut(64, 2), [32, 32]);
    assert.deepEqual(shareOut(64, 3), [22, 21, 21]);
    assert.deepEqual(shareOut(1, 4), [1]);
    assert.deepEqual(shareOut(3, 1), [3]);
  });

  it('adds up the threads’ counts, latencies and failures', () => {
    const merged = mergeLoops(loop(2, [100, 200], [['UNAVAILABLE', 1]], 'UNAVAILABLE: first'), [
      loop(3, [300, 400, 500], [['UNAVAILABLE', 2], ['DEADLINE_EXCEEDED', 1]], 'DEADLINE_EXCEEDED: later'),
    ]);
    assert.equal(merged.ops, 5);
    assert.equal(merged.errors, 4);
    assert.equal(merged.latencyUs.totalCount, 5);
    assert.equal(merged.latencyUs.maxValue, 500);
    assert.deepEqual([...merged.errorKinds], [['UNAVAILABLE', 3], ['DEADLINE_EXCEEDED', 1]]);
    assert.equal(merged.firstError, 'UNAVAILABLE: first');
  });

  it('runs a scenario on two threads against a real group and reports it as one', () => {
    const main = fileURLToPath(new URL('../main.js', import.meta.url));
    const args = [main, 'raft', '--systems', 'concord', '--members', '1', '--scenarios', 'put-c64', '--duration', '1', '--warmup', '0.3', '--client-threads', '2'];
    const run = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { config: { client_threads: number }; results: { id: string; ops: number; errors: number; concurrency: number; ops_by_thread?: number[] }[] };
    assert.equal(report.config.client_threads, 2);
    const [result] = report.results;
    assert.equal(result?.id, 'concord-put-c64');
    assert.equal(result.concurrency, 64);
    assert.equal(result.errors, 0);
    assert.ok(result.ops > 64, `only ${result.ops} puts in the window`);
    // Both threads did their share, and the report's count is their sum.
    assert.equal(result.ops_by_thread?.length, 2);
    assert.ok(result.ops_by_thread.every((ops) => ops > 0), JSON.stringify(result.ops_by_thread));
    assert.equal(result.ops_by_thread[0]! + result.ops_by_thread[1]!, result.ops);
  });
});
