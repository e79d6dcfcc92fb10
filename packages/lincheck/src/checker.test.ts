import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from './checker.js';
import { kvModel, type KvOperation } from './models/kv.js';
import { registerModel, type RegisterInput, type RegisterOutput } from './models/register.js';
import { done, kv, timedOut } from './testing/builders.js';
import type { Model, Operation } from './types.js';

type RegisterOp = Operation<RegisterInput<number>, RegisterOutput<number>>;
const register = registerModel(0);
const write = (value: number): RegisterInput<number> => ({ op: 'write', value });
const read: RegisterInput<number> = { op: 'read' };

describe('checkLinearizable: the search', () => {
  it('accepts the empty history and one of only unknown outcomes', () => {
    const empty = checkLinearizable(register, []);
    assert.deepEqual(empty, { result: 'ok', partitions: [{ label: 'register', result: 'ok', operations: 0, steps: 0 }], steps: 0 });
    const unknownOnly: RegisterOp[] = [timedOut('a', 0, write(1)), timedOut('b', 1, read)];
    assert.equal(checkLinearizable(register, unknownOnly).result, 'ok');
  });

  // a: [write 1]
  // b:         [read → 0]   at the same instant 5: concurrent, so the read may come first
  it('treats a return and a call at the same time as concurrent', () => {
    assert.equal(checkLinearizable(register, [done('a', 0, 5, write(1), null), done('b', 5, 6, read, 0)]).result, 'ok');
    assert.equal(checkLinearizable(register, [done('a', 0, 5, write(1), null), done('b', 6, 7, read, 0)]).result, 'illegal');
  });

  it('does not depend on the order operations are listed in', () => {
    const history: RegisterOp[] = [
      done('a', 0, 1, write(1), null),
      done('b', 2, 9, write(2), null),
      done('c', 3, 4, read, 2),
      done('d', 5, 6, read, 1),
    ];
    assert.equal(checkLinearizable(register, history).result, 'illegal');
    assert.equal(checkLinearizable(register, [...history].reverse()).result, 'illegal');
    const legal = history.slice(0, 3);
    assert.equal(checkLinearizable(register, legal).result, 'ok');
    assert.equal(checkLinearizable(register, [...legal].reverse()).result, 'ok');
  });

  it('explores every state a nondeterministic step allows', () => {
    // A register whose acknowledged writes may be lost: a write leaves the new value, or the old one.
    const lossy: Model<number, RegisterInput<number>, RegisterOutput<number>> = {
      name: 'lossy register',
      init: () => 0,
      step: (state, input, output) => {
        if (input.op === 'write') return { ok: true, next: input.value, alternatives: [state] };
        if (output === undefined || output === state) return { ok: true, next: state };
        return { ok: false, reason: `read ${output}, holds ${state}` };
      },
      equal: (a, b) => a === b,
      hash: (state) => state,
      describeOperation: (input, output) => `${input.op} → ${String(output)}`,
      describeState: (state) => String(state),
    };
    const writeThenRead = (value: number): RegisterOp[] => [done('a', 0, 1, write(1), null), done('b', 2, 3, read, value)];
    assert.equal(checkLinearizable(lossy, writeThenRead(1)).result, 'ok');
    // Reading 0 needs the second choice of the write, reached only by backtracking into it.
    assert.equal(checkLinearizable(lossy, writeThenRead(0)).result, 'ok');
    assert.equal(checkLinearizable(lossy, writeThenRead(2)).result, 'illegal');
  });

  it('is deterministic: the same history takes the same steps', () => {
    const history: RegisterOp[] = [];
    for (let i = 0; i < 200; i++) {
      history.push(done(i % 7, i, i + 20, i % 3 === 0 ? write(i) : read, i % 3 === 0 ? null : Math.floor((i - 6) / 3) * 3));
    }
    const first = checkLinearizable(register, history);
    const second = checkLinearizable(register, history);
    assert.equal(first.steps, second.steps);
    assert.equal(first.result, second.result);
  });

  it('deep histories do not overflow the stack', () => {
    const history: RegisterOp[] = [];
    for (let i = 0; i < 20_000; i++) {
      history.push(done('a', 4 * i, 4 * i + 1, write(i), null));
      history.push(done('b', 4 * i + 2, 4 * i + 3, read, i));
    }
    assert.equal(checkLinearizable(register, history).result, 'ok');

    history.push(done('c', 80_000, 80_001, read, 17));
    const result = checkLinearizable(register, history);
    assert.equal(result.result, 'illegal');
    assert.equal(result.illegal?.linearizedPrefix.length, 40_000);
    assert.equal(result.illegal?.unplaceable, history[40_000]);
    // The message lists the end of the prefix, not all of it.
    assert.ok((result.illegal?.message.split('\n').length ?? 0) < 20);
  });
});

describe('checkLinearizable: budget and verdicts', () => {
  const sequentialWrites = (n: number): KvOperation[] =>
    Array.from({ length: n }, (_, i) => done('c1', 2 * i, 2 * i + 1, kv.put('y', `v${i}`), { version: i + 1 }));

  it('reports unknown when the search runs out of steps, and the steps it took', () => {
    const history = sequentialWrites(50);
    const limited = checkLinearizable(kvModel, history, { maxSteps: 10 });
    assert.equal(limited.result, 'unknown');
    assert.equal(limited.steps, 10);
    assert.equal(limited.partitions[0]?.result, 'unknown');
    assert.equal(limited.illegal, undefined);
    assert.equal(checkLinearizable(kvModel, history).result, 'ok');
  });

  it('an illegal partition outranks one that ran out of budget', () => {
    const history = [...sequentialWrites(50), done('c2', 0, 1, kv.get('x'), { found: true, value: 'never written' })];
    const result = checkLinearizable(kvModel, history, { maxSteps: 10 });
    assert.equal(result.result, 'illegal');
    assert.deepEqual(
      result.partitions.map((p) => [p.label, p.result]),
      [
        ['key "y"', 'unknown'],
        ['key "x"', 'illegal'],
      ],
    );
  });

  /** Concurrent puts of three values, then reads of v2 and, after it, v0: illegal, as no put follows. */
  const overlappingPuts = (n: number, lastRead: string): KvOperation[] => [
    ...Array.from({ length: n }, (_, i) => done(i % 6, i, i + 8, kv.put('x', `v${i % 3}`), {})),
    done('r', n + 10, n + 11, kv.get('x'), { found: true, value: 'v2' }),
    done('r', n + 12, n + 13, kv.get('x'), { found: true, value: lastRead }),
  ];

  it('memoization matters: without it a small illegal history exhausts the budget', () => {
    const history = overlappingPuts(30, 'v0');
    const memoized = checkLinearizable(kvModel, history);
    assert.equal(memoized.result, 'illegal');
    assert.ok(memoized.steps < 200_000, `${memoized.steps} steps`);
    // maxMemoBytes 0 keeps the table at one node: plain backtracking search.
    assert.equal(checkLinearizable(kvModel, history, { maxMemoBytes: 0, maxSteps: 1_000_000 }).result, 'unknown');
  });

  it('a memo bound too small for the search changes the work, never the verdict', () => {
    for (const n of [3, 5, 7]) {
      const unbounded = checkLinearizable(kvModel, overlappingPuts(n, 'v0'));
      const bounded = checkLinearizable(kvModel, overlappingPuts(n, 'v0'), { maxMemoBytes: 0 });
      assert.equal(unbounded.result, 'illegal');
      assert.equal(bounded.result, 'illegal');
      assert.ok(bounded.steps >= unbounded.steps);
      assert.equal(checkLinearizable(kvModel, overlappingPuts(n, 'v2'), { maxMemoBytes: 0 }).result, 'ok');
    }
  });

  it('rejects malformed histories and options with a message naming the problem', () => {
    const check = (op: RegisterOp) => () => checkLinearizable(register, [op]);
    assert.throws(check({ clientId: 'a', input: read, call: 5, return: 4, output: 0 }), /history\[0\].*returns at 4, before its call at 5/);
    assert.throws(check({ clientId: 'a', input: read, call: Number.NaN, return: 4, output: 0 }), /call time NaN/);
    assert.throws(check({ clientId: 'a', input: read, call: 1, return: undefined, output: 0 }), /unknown outcome .* cannot have an output/);
    assert.throws(check({ clientId: 'a', input: read, call: 1, return: 2, output: undefined }), /needs an output/);
    assert.throws(() => checkLinearizable(register, [], { maxSteps: 0 }), /maxSteps must be a positive integer/);
  });
});

describe('checkLinearizable: explanations', () => {
  it('names the key, the operation that cannot be placed, why, and the prefix before it', () => {
    const history: KvOperation[] = [
      done('c1', 0, 1, kv.put('x', 'a'), { version: 1 }),
      done('c1', 2, 3, kv.put('x', 'b'), { version: 2 }),
      done('c2', 4, 5, kv.get('x'), { found: true, value: 'a', version: 1 }),
    ];
    const result = checkLinearizable(kvModel, history);
    assert.equal(
      result.illegal?.message,
      [
        'not linearizable: key "x"',
        '  cannot place: [client c2 4..5] get("x") → "a" @v1',
        '  because: get read "a" @v1 but the key holds "b" @v2',
        '  after the longest linearizable prefix found (2 operations), state "b" @v2:',
        '    1. [client c1 0..1] put("x", "a") → ok v1',
        '    2. [client c1 2..3] put("x", "b") → ok v2',
      ].join('\n'),
    );
  });
});
