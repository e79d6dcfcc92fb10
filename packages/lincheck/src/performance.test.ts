import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from './checker.js';
import { kvModel, type KvOperation } from './models/kv.js';
import { randomKvHistory, type RandomKvHistoryOptions } from './testing/random-kv-history.js';

// Budgets the simulator relies on. Histories come from a correct execution (randomKvHistory), so
// the verdict must be 'ok'; one corrupted read must then be found. Times are generous bounds for a
// slow CI machine; the diagnostics print what was measured.

const TIME_LIMIT_MS = 1000;

function timed(history: KvOperation[]) {
  const started = performance.now();
  const result = checkLinearizable(kvModel, history);
  return { result, ms: performance.now() - started };
}

/** The same history with the last completed get of `key` reporting a value nobody wrote. */
function corruptLastRead(history: KvOperation[]): KvOperation[] {
  const copy = [...history];
  const index = copy.findLastIndex((op) => op.input.op === 'get' && op.return !== undefined);
  const op = copy[index]!;
  copy[index] = { ...op, output: { found: true, value: 'never-written' } };
  return copy;
}

describe('checkLinearizable performance', () => {
  const manyKeys = (clients: number, seed: number): RandomKvHistoryOptions => ({
    seed,
    operations: 5000,
    clients,
    keys: 100,
    values: 3,
    unknownRate: 0.05,
    versions: 'mixed',
    maxDuration: 20,
    maxThinkTime: 5,
  });

  for (const clients of [10, 30, 50]) {
    it(`5,000 operations over 100 keys from ${clients} clients, 5% timed out`, (t) => {
      const history = randomKvHistory(manyKeys(clients, clients));
      const { result, ms } = timed(history);
      t.diagnostic(`${ms.toFixed(1)} ms, ${result.steps} steps`);
      assert.equal(result.result, 'ok', result.illegal?.message);
      assert.equal(result.partitions.length, 100);
      assert.ok(ms < TIME_LIMIT_MS, `${ms} ms`);

      const corrupted = timed(corruptLastRead(history));
      t.diagnostic(`corrupted: ${corrupted.ms.toFixed(1)} ms`);
      assert.equal(corrupted.result.result, 'illegal');
      assert.ok(corrupted.ms < TIME_LIMIT_MS, `${corrupted.ms} ms`);
    });
  }

  // Every client on one key, operations ten times longer than the pause between them: about 45
  // operations in flight at any moment, so nothing partitions the search.
  const oneHotKey = (seed: number, versions: RandomKvHistoryOptions['versions'], unknownRate: number): RandomKvHistoryOptions => ({
    seed,
    operations: 400,
    clients: 50,
    keys: 1,
    values: 0,
    unknownRate,
    versions,
    maxDuration: 50,
    maxThinkTime: 5,
  });

  for (const versions of ['all', 'none'] as const) {
    for (const unknownRate of [0, 0.1]) {
      it(`400 operations on one key from 50 clients, versions: ${versions}, ${unknownRate * 100}% timed out`, (t) => {
        for (const seed of [1, 2, 3]) {
          const history = randomKvHistory(oneHotKey(seed, versions, unknownRate));
          const { result, ms } = timed(history);
          t.diagnostic(`seed ${seed}: ${ms.toFixed(1)} ms, ${result.steps} steps`);
          assert.equal(result.result, 'ok', result.illegal?.message);
          assert.ok(ms < TIME_LIMIT_MS, `${ms} ms`);
          assert.equal(timed(corruptLastRead(history)).result.result, 'illegal');
        }
      });
    }
  }

  it('500 operations on one key from 20 clients writing only 3 distinct values', (t) => {
    for (const seed of [1, 2, 3]) {
      const history = randomKvHistory({ ...oneHotKey(seed, 'none', 0.05), operations: 500, clients: 20, values: 3, maxDuration: 30 });
      const { result, ms } = timed(history);
      t.diagnostic(`seed ${seed}: ${ms.toFixed(1)} ms, ${result.steps} steps`);
      assert.equal(result.result, 'ok', result.illegal?.message);
      assert.ok(ms < TIME_LIMIT_MS, `${ms} ms`);
    }
  });
});
