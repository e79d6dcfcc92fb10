import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from './checker.js';
import { kvModel, type KvInput, type KvKeyState, type KvOperation } from './models/kv.js';
import { randomKvHistory, seededRandom } from './testing/random-kv-history.js';

// The checker against the definition. Small random histories (at most 8 operations) come from a real
// sequential execution with random interleavings, so they are linearizable; most of them are then
// mutated (an output, a time, an outcome made unknown...), which may or may not break that. For
// each, the verdict must equal that of a brute-force search over every order of the operations
// consistent with real time. The brute force shares only `kvModel.step` with the checker: no entry
// list, memoization, partitioning, pruning or greedy reads.

const CASES = 3000;

/**
 * Is there an order of all completed operations, plus any subset of the unknown ones, that respects
 * real time (a before b when a returned before b was called) and is legal for the model, key by key?
 */
function bruteForceLinearizable(history: readonly KvOperation[]): boolean {
  const placed = history.map(() => false);
  const completed = history.filter((op) => op.return !== undefined).length;
  const states = new Map<string, KvKeyState>();
  const search = (placedCompleted: number): boolean => {
    if (placedCompleted === completed) return true;
    for (let i = 0; i < history.length; i++) {
      if (placed[i]) continue;
      const op = history[i]!;
      const mustWait = history.some((other, j) => !placed[j] && other.return !== undefined && other.return < op.call);
      if (mustWait) continue;
      const key = op.input.key;
      const before = states.get(key) ?? kvModel.init();
      const step = kvModel.step(before, op.input, op.output);
      if (!step.ok) continue;
      for (const next of [step.next, ...(step.alternatives ?? [])]) {
        placed[i] = true;
        states.set(key, next);
        const found = search(placedCompleted + (op.return === undefined ? 0 : 1));
        placed[i] = false;
        states.set(key, before);
        if (found) return true;
      }
    }
    return false;
  };
  return search(0);
}

/** One random change to a history: an output, a time, an outcome or an input. */
function mutate(history: readonly KvOperation[], random: () => number): KvOperation[] {
  const int = (max: number): number => Math.floor(random() * (max + 1));
  const pick = <T>(items: readonly T[]): T => items[int(items.length - 1)]!;
  const ops = history.map((op) => ({ ...op }));
  const index = int(ops.length - 1);
  const op = ops[index]!;
  const nudge = (version: number | undefined): number => Math.max(0, (version ?? int(6)) + pick([-2, -1, 1, 2]));
  // Output changes, most likely to matter, are drawn twice as often.
  switch (pick([0, 0, 1, 2, 3, 4])) {
    case 0: {
      if (op.return === undefined) break;
      const output = op.output as Record<string, unknown>;
      switch (op.input.op) {
        case 'get':
          op.output =
            random() < 0.3
              ? { found: !output.found, value: 'v0' }
              : { ...output, found: true, value: pick(['v0', 'v1', 'v2', 'v3']) };
          if (random() < 0.5) op.output = { ...op.output, version: nudge(output.version as number | undefined) };
          break;
        case 'put':
          op.output = { version: nudge(output.version as number | undefined) };
          break;
        case 'cas':
        case 'delete':
          op.output =
            random() < 0.5 ? { ...output, ok: !output.ok } : { ...output, version: nudge(output.version as number | undefined) };
          break;
      }
      break;
    }
    case 1: {
      const shift = 1 + int(4);
      if (op.return === undefined || random() < 0.3) {
        // Shift both ends, each by its own amount.
        const call = op.call + pick([-shift, shift]);
        ops[index] = { ...op, call, return: op.return === undefined ? undefined : op.return + pick([-shift, shift]) };
      } else if (random() < 0.5) {
        ops[index] = { ...op, call: Math.min(op.return, op.call + shift) };
      } else {
        ops[index] = { ...op, return: Math.max(op.call, op.return - shift) };
      }
      const moved = ops[index]!;
      if (moved.return !== undefined && moved.return < moved.call) ops[index] = { ...moved, return: moved.call };
      break;
    }
    case 2:
      ops[index] = { ...op, return: undefined, output: undefined };
      break;
    case 3: {
      const other = ops.find((o, i) => i !== index && o.input.op === op.input.op && o.return !== undefined);
      if (other === undefined || op.return === undefined) break;
      const output = op.output;
      op.output = other.output;
      other.output = output;
      break;
    }
    case 4: {
      const input: KvInput = op.input;
      if (input.op === 'cas') op.input = { ...input, expectedVersion: nudge(input.expectedVersion) };
      else if (input.op === 'put') op.input = { ...input, value: pick(['v0', 'v1', 'v2', 'v3']) };
      else if (input.op === 'delete') op.input = { ...input, expectedVersion: nudge(input.expectedVersion) };
      else op.input = { ...input, key: input.key === 'k0' ? 'k1' : 'k0' };
      break;
    }
  }
  return ops;
}

function show(history: readonly KvOperation[]): string {
  return history.map((op) => `  ${JSON.stringify(op)}`).join('\n');
}

describe('checkLinearizable agrees with a brute-force search', () => {
  it(`on ${CASES} seeded random histories of up to 8 operations, most of them mutated`, (t) => {
    const tally = { generated: 0, mutatedOk: 0, mutatedIllegal: 0, withUnknown: 0 };
    for (let seed = 1; seed <= CASES; seed++) {
      const random = seededRandom(seed * 7919);
      const int = (max: number): number => Math.floor(random() * (max + 1));
      const generated = randomKvHistory({
        seed,
        operations: 1 + int(7),
        clients: 1 + int(3),
        keys: 1 + int(1),
        values: 1 + int(2),
        unknownRate: [0, 0.15, 0.3][int(2)]!,
        versions: (['all', 'none', 'mixed'] as const)[int(2)]!,
        maxDuration: int(6),
        maxThinkTime: int(3),
      });
      const mutated = random() < 0.6;
      let history = generated;
      if (mutated) for (let m = 1 + int(1); m > 0; m--) history = mutate(history, random);
      if (history.some((op) => op.return === undefined)) tally.withUnknown++;

      const expected = bruteForceLinearizable(history);
      const result = checkLinearizable(kvModel, history);
      const context = `seed ${seed}${mutated ? ' (mutated)' : ''}:\n${show(history)}\n${result.illegal?.message ?? ''}`;
      if (!mutated) {
        assert.equal(expected, true, `generator produced a non-linearizable history, ${context}`);
        tally.generated++;
      } else if (expected) {
        tally.mutatedOk++;
      } else {
        tally.mutatedIllegal++;
      }
      assert.equal(result.result, expected ? 'ok' : 'illegal', `verdict differs from brute force, ${context}`);

      if (result.illegal !== undefined) {
        // The explanation names a completed operation of the history outside a prefix that respects
        // real time.
        const { linearizedPrefix: prefix, unplaceable } = result.illegal;
        assert.ok(history.includes(unplaceable) && unplaceable.return !== undefined, context);
        assert.ok(!prefix.includes(unplaceable), context);
        prefix.forEach((a, i) =>
          prefix
            .slice(i + 1)
            .forEach((b) => assert.ok(!(b.return !== undefined && b.return < a.call), `prefix out of real-time order, ${context}`)),
        );
      }
    }
    t.diagnostic(JSON.stringify(tally));
    // The mutations must produce plenty of both verdicts, or this test proves little.
    assert.ok(tally.mutatedIllegal >= CASES / 6, JSON.stringify(tally));
    assert.ok(tally.mutatedOk >= CASES / 20, JSON.stringify(tally));
    assert.ok(tally.withUnknown >= CASES / 5, JSON.stringify(tally));
  });
});

// Larger histories are out of the brute force's reach, but not of the checker stripped of its
// domain knowledge: without the pruner and without read-only operations (so no greedy reads and no
// dropping), only the entry list and the memo table remain. Both must agree.
describe('the KV pruner and greedy reads never change a verdict', () => {
  const plainKvModel: typeof kvModel = {
    name: kvModel.name,
    init: () => kvModel.init(),
    step: (state, input, output) => kvModel.step(state, input, output),
    partition: (history) => kvModel.partition!(history),
    equal: (a, b) => kvModel.equal(a, b),
    hash: (state) => kvModel.hash(state),
    describeOperation: (input, output) => kvModel.describeOperation(input, output),
    describeState: (state) => kvModel.describeState(state),
  };
  const MEDIUM_CASES = 1500;

  it(`on ${MEDIUM_CASES} seeded random histories of 12 to 40 operations`, (t) => {
    const tally = { compared: 0, illegal: 0, plainOutOfBudget: 0 };
    for (let seed = 1; seed <= MEDIUM_CASES; seed++) {
      const random = seededRandom(seed * 104729);
      const int = (max: number): number => Math.floor(random() * (max + 1));
      let history = randomKvHistory({
        seed: seed + 1_000_000,
        operations: 12 + int(28),
        clients: 2 + int(6),
        keys: 1 + int(1),
        values: int(3),
        unknownRate: [0, 0.1, 0.25][int(2)]!,
        versions: (['all', 'none', 'mixed'] as const)[int(2)]!,
        maxDuration: 2 + int(10),
        maxThinkTime: int(4),
      });
      if (random() < 0.6) history = mutate(history, random);
      const plain = checkLinearizable(plainKvModel, history, { maxSteps: 300_000 });
      if (plain.result === 'unknown') {
        tally.plainOutOfBudget++;
        continue;
      }
      const full = checkLinearizable(kvModel, history);
      assert.equal(full.result, plain.result, `seed ${seed}:\n${show(history)}\n${full.illegal?.message ?? plain.illegal?.message ?? ''}`);
      tally.compared++;
      if (full.result === 'illegal') tally.illegal++;
    }
    t.diagnostic(JSON.stringify(tally));
    assert.ok(tally.compared >= MEDIUM_CASES * 0.9, JSON.stringify(tally));
    assert.ok(tally.illegal >= MEDIUM_CASES / 10, JSON.stringify(tally));
  });
});

