import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from '../checker.js';
import { done, kv, timedOut } from '../testing/builders.js';
import type { Verdict } from '../types.js';
import { kvModel, type KvOperation } from './kv.js';

// Times are logical ticks. Each history is drawn as a timeline in the comment above it:
// [call ... return], `?` for an operation of unknown outcome.

const found = (value: string, version?: number) => (version === undefined ? { found: true, value } : { found: true, value, version });
const notFound = { found: false };
const written = (version?: number) => (version === undefined ? {} : { version });

function verdict(history: KvOperation[]): Verdict {
  return checkLinearizable(kvModel, history).result;
}

describe('kvModel: linearizable histories are accepted', () => {
  it('a sequential history with every operation kind and versions', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.get('x'), notFound),
      done('c1', 2, 3, kv.put('x', 'a'), written(4)),
      done('c2', 4, 5, kv.get('x'), found('a', 4)),
      done('c2', 6, 7, kv.cas('x', 4, 'b'), { ok: true, version: 9 }),
      done('c1', 8, 9, kv.cas('x', 4, 'c'), { ok: false, version: 9 }),
      done('c1', 10, 11, kv.get('x'), found('b', 9)),
      done('c2', 12, 13, kv.delete('x', 9), { ok: true, deleted: true, version: 9 }),
      done('c2', 14, 15, kv.get('x'), notFound),
      done('c1', 16, 17, kv.cas('x', 0, 'd'), { ok: true, version: 12 }),
      done('c1', 18, 19, kv.delete('x'), { ok: true, deleted: true, version: 12 }),
      done('c1', 20, 21, kv.delete('x'), { ok: true, deleted: false, version: 0 }),
    ];
    assert.equal(verdict(history), 'ok');
  });

  it('the same history without versions', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c2', 2, 3, kv.get('x'), found('a')),
      done('c1', 4, 5, kv.delete('x'), { ok: true }),
      done('c2', 6, 7, kv.get('x'), notFound),
    ];
    assert.equal(verdict(history), 'ok');
  });

  // c1: [put a]
  // c2:   [put b]
  // c3:            [get]
  it('overlapping writes: a later read may see either', () => {
    for (const [value, version] of [
      ['a', 2],
      ['b', 3],
    ] as const) {
      const history: KvOperation[] = [
        done('c1', 0, 4, kv.put('x', 'a'), written(value === 'a' ? 2 : 1)),
        done('c2', 1, 5, kv.put('x', 'b'), written(value === 'b' ? 3 : 1)),
        done('c3', 6, 7, kv.get('x'), found(value, version)),
        done('c3', 8, 9, kv.get('x'), found(value, version)),
      ];
      assert.equal(verdict(history), 'ok', `read of ${value}`);
    }
  });

  // c1: [put a]
  // c2:          [======= put b =======]
  // c3:             [get]    [get]
  it('reads during a write see the old or the new value, old before new', () => {
    const base: KvOperation[] = [done('c1', 0, 1, kv.put('x', 'a'), written(1)), done('c2', 2, 10, kv.put('x', 'b'), written(2))];
    for (const [first, second] of [
      ['a', 'a'],
      ['a', 'b'],
      ['b', 'b'],
    ] as const) {
      const history: KvOperation[] = [
        ...base,
        done('c3', 3, 4, kv.get('x'), found(first, first === 'a' ? 1 : 2)),
        done('c3', 5, 6, kv.get('x'), found(second, second === 'a' ? 1 : 2)),
      ];
      assert.equal(verdict(history), 'ok', `${first} then ${second}`);
    }
  });

  // c2:    [==== put b ====]
  // c3:      [ get → b ]
  // c4:        [ get → a ]     the reads overlap each other: a, b order is fine
  it('overlapping reads during a write may disagree in either order', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(1)),
      done('c2', 2, 12, kv.put('x', 'b'), written(2)),
      done('c3', 3, 8, kv.get('x'), found('b', 2)),
      done('c4', 4, 9, kv.get('x'), found('a', 1)),
    ];
    assert.equal(verdict(history), 'ok');
  });

  it('versions may skip numbers', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(3)),
      done('c1', 2, 3, kv.put('x', 'b'), written(40)),
      done('c1', 4, 5, kv.get('x'), found('b', 40)),
    ];
    assert.equal(verdict(history), 'ok');
  });

  it('a version nobody reported is pinned by the first output that shows it', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c2', 2, 3, kv.get('x'), found('a', 7)),
      done('c1', 4, 5, kv.cas('x', 7, 'b'), { ok: true }),
      done('c2', 6, 7, kv.get('x'), found('b', 8)),
    ];
    assert.equal(verdict(history), 'ok');
  });
});

describe('kvModel: non-linearizable histories are rejected', () => {
  // c1: [put b]
  // c2:          [get → a]     the write completed before the read began
  it('a stale read after a write completed', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c1', 2, 3, kv.put('x', 'b'), written()),
      done('c2', 4, 5, kv.get('x'), found('a')),
    ];
    const result = checkLinearizable(kvModel, history);
    assert.equal(result.result, 'illegal');
    assert.equal(result.illegal?.partition, 'key "x"');
    assert.equal(result.illegal?.unplaceable, history[2]);
    assert.deepEqual(result.illegal?.linearizedPrefix, [history[0], history[1]]);
    assert.equal(result.illegal?.stateAfterPrefix, '"b" @v>0');
    assert.match(result.illegal?.reason ?? '', /get read "a" but the key holds "b"/);
    assert.match(result.illegal?.message ?? '', /cannot place: \[client c2 4\.\.5\] get\("x"\) → "a"/);
  });

  // c2:   [========= put b =========]
  // c3:     [get → b]  [get → a]        new, then old: time went backwards
  it('two sequential reads that go back in time during a write', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c2', 2, 20, kv.put('x', 'b'), written()),
      done('c3', 3, 4, kv.get('x'), found('b')),
      done('c4', 5, 6, kv.get('x'), found('a')),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a read of a value never written', () => {
    const history: KvOperation[] = [
      done('c1', 0, 5, kv.put('x', 'a'), written()),
      done('c2', 1, 6, kv.put('x', 'b'), written()),
      done('c3', 2, 7, kv.get('x'), found('c')),
    ];
    const result = checkLinearizable(kvModel, history);
    assert.equal(result.result, 'illegal');
    assert.equal(result.illegal?.unplaceable, history[2]);
  });

  it('a read of a key that was never written', () => {
    assert.equal(verdict([done('c1', 0, 1, kv.get('x'), found('a'))]), 'illegal');
  });

  // Both clients read version 1 and both compare-and-sets succeed: one update is lost.
  it('a lost update: two CASes expecting the same version both succeed', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', '0'), written(1)),
      done('c1', 2, 3, kv.get('x'), found('0', 1)),
      done('c2', 2, 3, kv.get('x'), found('0', 1)),
      done('c1', 4, 8, kv.cas('x', 1, 'c1'), { ok: true, version: 2 }),
      done('c2', 5, 9, kv.cas('x', 1, 'c2'), { ok: true, version: 3 }),
    ];
    assert.equal(verdict(history), 'illegal');
    // Without the versions they report, still impossible: after the first, the version is not 1.
    const unversioned = history.map((op, i) => (i >= 3 ? { ...op, output: { ok: true } } : op));
    assert.equal(verdict(unversioned), 'illegal');
  });

  it('versions going backwards', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(5)),
      done('c2', 2, 3, kv.put('x', 'b'), written(3)),
    ];
    assert.equal(verdict(history), 'illegal');
    // Concurrent, the order 3 then 5 would do: legal.
    assert.equal(verdict([{ ...history[0]!, return: 4 }, history[1]!]), 'ok');
  });

  it('versions going backwards across a delete', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(5)),
      done('c1', 2, 3, kv.delete('x'), { ok: true, deleted: true, version: 5 }),
      done('c1', 4, 5, kv.put('x', 'b'), written(4)),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a read of the right value with a stale version', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(1)),
      done('c1', 2, 3, kv.put('x', 'a'), written(2)),
      done('c2', 4, 5, kv.get('x'), found('a', 1)),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  // c1:              [put a]
  // c2: [get → a]                the value was read before anyone wrote it
  it('a value read before its write was called', () => {
    const history: KvOperation[] = [done('c2', 0, 1, kv.get('x'), found('a')), done('c1', 2, 3, kv.put('x', 'a'), written())];
    assert.equal(verdict(history), 'illegal');
  });

  it('a read after a completed delete still sees the value', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c1', 2, 3, kv.delete('x'), { ok: true, deleted: true }),
      done('c2', 4, 5, kv.get('x'), found('a')),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a CAS that failed although it expected the current version', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(3)),
      done('c1', 2, 3, kv.cas('x', 3, 'b'), { ok: false }),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a CAS that failed reporting a current version the key does not have', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(3)),
      done('c1', 2, 3, kv.cas('x', 2, 'b'), { ok: false, version: 4 }),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a CAS expecting absence that succeeded on an existing key', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c1', 2, 3, kv.cas('x', 0, 'b'), { ok: true }),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a delete that misreports whether the key existed, or fails unconditionally', () => {
    assert.equal(verdict([done('c1', 0, 1, kv.delete('x'), { ok: true, deleted: true })]), 'illegal');
    assert.equal(verdict([done('c1', 0, 1, kv.delete('x'), { ok: false })]), 'illegal');
  });

  it('a version failed CAS ruled out cannot show up later', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      done('c1', 2, 3, kv.cas('x', 3, 'b'), { ok: false }),
      done('c1', 4, 5, kv.get('x'), found('a', 3)),
    ];
    assert.equal(verdict(history), 'illegal');
    assert.equal(verdict([history[0]!, history[1]!, done('c1', 4, 5, kv.get('x'), found('a', 4))]), 'ok');
  });
});

describe('kvModel: operations of unknown outcome', () => {
  it('a timed-out put whose value is later read happened', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(1)),
      timedOut('c2', 2, kv.put('x', 'b')),
      done('c3', 10, 11, kv.get('x'), found('b', 2)),
    ];
    assert.equal(verdict(history), 'ok');
  });

  it('a timed-out put whose value is never read may not have happened', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(1)),
      timedOut('c2', 2, kv.put('x', 'b')),
      done('c3', 10, 11, kv.get('x'), found('a', 1)),
      done('c3', 12, 13, kv.get('x'), found('a', 1)),
    ];
    assert.equal(verdict(history), 'ok');
  });

  it('a timed-out put may take effect long after the client gave up', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      timedOut('c2', 2, kv.put('x', 'b')),
      done('c2', 50, 51, kv.get('x'), found('a')),
      done('c3', 100, 101, kv.get('x'), found('b')),
    ];
    assert.equal(verdict(history), 'ok');
  });

  // c2:   [put b ?
  // c3:             [get → b]
  // c4:                        [get → a]    b became visible, so a is gone for good
  it('a read of a timed-out value, then a later read of the older value', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      timedOut('c2', 2, kv.put('x', 'b')),
      done('c3', 10, 11, kv.get('x'), found('b')),
      done('c4', 12, 13, kv.get('x'), found('a')),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a timed-out put cannot take effect before it was called', () => {
    const history: KvOperation[] = [done('c1', 0, 1, kv.get('x'), found('b')), timedOut('c2', 2, kv.put('x', 'b'))];
    assert.equal(verdict(history), 'illegal');
  });

  it('a timed-out put happens at most once', () => {
    const history: KvOperation[] = [
      timedOut('c1', 0, kv.put('x', 'b')),
      done('c2', 1, 2, kv.get('x'), found('b')),
      done('c3', 3, 4, kv.put('x', 'a'), written()),
      done('c2', 5, 6, kv.get('x'), found('b')),
    ];
    assert.equal(verdict(history), 'illegal');
  });

  it('a timed-out get is ignored', () => {
    const history: KvOperation[] = [done('c1', 0, 1, kv.put('x', 'a'), written()), timedOut('c2', 2, kv.get('x'))];
    const result = checkLinearizable(kvModel, history);
    assert.equal(result.result, 'ok');
    assert.equal(result.partitions[0]?.operations, 1);
  });

  it('a timed-out CAS against a version nobody saw either applied or not', () => {
    const before: KvOperation[] = [done('c1', 0, 1, kv.put('x', 'a'), written()), timedOut('c2', 2, kv.cas('x', 3, 'b'))];
    assert.equal(verdict([...before, done('c3', 10, 11, kv.get('x'), found('a'))]), 'ok');
    assert.equal(verdict([...before, done('c3', 10, 11, kv.get('x'), found('b', 5))]), 'ok');
    // Applied means the key was at version 3, so the read before it cannot show version 4.
    const pinned: KvOperation[] = [
      ...before,
      done('c3', 3, 4, kv.get('x'), found('a', 4)),
      done('c3', 10, 11, kv.get('x'), found('b')),
    ];
    assert.equal(verdict(pinned), 'illegal');
  });

  it('a timed-out delete: the value may vanish, but not come back', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written()),
      timedOut('c2', 2, kv.delete('x')),
      done('c3', 3, 4, kv.get('x'), found('a')),
      done('c3', 5, 6, kv.get('x'), notFound),
    ];
    assert.equal(verdict(history), 'ok');
    assert.equal(verdict([...history, done('c3', 7, 8, kv.get('x'), found('a'))]), 'illegal');
  });
});

describe('kvModel: keys are independent registers', () => {
  it('each key is its own partition, and the illegal one is named', () => {
    const history: KvOperation[] = [];
    for (let k = 0; k < 20; k++) {
      history.push(done('c1', 4 * k, 4 * k + 1, kv.put(`key-${k}`, 'a'), written()));
      history.push(done('c2', 4 * k + 2, 4 * k + 3, kv.get(`key-${k}`), found(k === 13 ? 'stale' : 'a')));
    }
    const result = checkLinearizable(kvModel, history);
    assert.equal(result.result, 'illegal');
    assert.equal(result.partitions.length, 20);
    assert.equal(result.illegal?.partition, 'key "key-13"');
    assert.deepEqual(
      result.partitions.filter((p) => p.result !== 'ok').map((p) => p.label),
      ['key "key-13"'],
    );
  });

  it('a write to one key says nothing about another', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), written(1)),
      done('c1', 2, 3, kv.put('y', 'a'), written(2)),
      done('c2', 4, 5, kv.get('x'), found('a', 1)),
      done('c2', 6, 7, kv.get('y'), found('a', 2)),
    ];
    assert.equal(verdict(history), 'ok');
  });
});
