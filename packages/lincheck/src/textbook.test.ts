import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from './checker.js';
import { stringHash } from './hash.js';
import { registerModel, type RegisterInput, type RegisterOutput } from './models/register.js';
import { done, timedOut } from './testing/builders.js';
import type { Model, Operation, Verdict } from './types.js';

// Classic examples with known verdicts. The model is a parameter of the checker, so a FIFO queue
// (defined here) plugs in the same way the KV model does.

type QueueInput = { readonly op: 'enq'; readonly item: string } | { readonly op: 'deq' };
/** enq completes with null; deq returns the item it removed. */
type QueueOutput = string | null;

const queueModel: Model<readonly string[], QueueInput, QueueOutput> = {
  name: 'queue',
  init: () => [],
  step: (items, input, output) => {
    if (input.op === 'enq') return { ok: true, next: [...items, input.item] };
    const [head, ...rest] = items;
    // A deq of unknown outcome must be placeable anywhere: on an empty queue it found nothing.
    if (head === undefined) return output === undefined ? { ok: true, next: items } : { ok: false, reason: 'deq on an empty queue' };
    if (output !== undefined && output !== head) return { ok: false, reason: `deq returned ${output} but the head is ${head}` };
    return { ok: true, next: rest };
  },
  equal: (a, b) => a.length === b.length && a.every((item, i) => item === b[i]),
  hash: (items) => stringHash(items.join('\u0000')),
  describeOperation: (input, output) => (input.op === 'enq' ? `enq(${input.item})` : `deq() → ${output ?? '?'}`),
  describeState: (items) => `[${items.join(', ')}]`,
};

type QueueOp = Operation<QueueInput, QueueOutput>;
const enq = (item: string): QueueInput => ({ op: 'enq', item });
const deq: QueueInput = { op: 'deq' };

function queueVerdict(history: QueueOp[]): Verdict {
  return checkLinearizable(queueModel, history).result;
}

// After the queue histories Herlihy & Wing use to introduce linearizability (TOPLAS 1990).
// Each event of the paper's sequential event listing is one tick here.
describe('Herlihy & Wing: queue histories', () => {
  // A: enq(x) [1 ········ 4]   deq()→y [7 · 8]   enq(z) [9 ... pending
  // B:   enq(y) [2 · 3]  deq()→x [5 · 6]
  it('H1, linearizable: enq(x) enq(y) deq→x deq→y, with a pending enq(z)', () => {
    const history: QueueOp[] = [
      done('A', 1, 4, enq('x'), null),
      done('B', 2, 3, enq('y'), null),
      done('B', 5, 6, deq, 'x'),
      done('A', 7, 8, deq, 'y'),
      timedOut('A', 9, enq('z')),
    ];
    assert.equal(queueVerdict(history), 'ok');
  });

  // A: enq(x) [1 · 2]   deq()→y [4 ······ 6]
  // B:            enq(y) [3 ······ 5]
  it('H2, not linearizable: enq(x) finished before enq(y) began, yet y leaves first', () => {
    const history: QueueOp[] = [done('A', 1, 2, enq('x'), null), done('B', 3, 5, enq('y'), null), done('A', 4, 6, deq, 'y')];
    assert.equal(queueVerdict(history), 'illegal');
  });

  // A: enq(x) [1 ... pending
  // B:   deq()→x [2 · 3]
  it('H3, linearizable: a pending enq(x) may take effect before the deq that returns x', () => {
    const history: QueueOp[] = [timedOut('A', 1, enq('x')), done('B', 2, 3, deq, 'x')];
    assert.equal(queueVerdict(history), 'ok');
  });

  // A: enq(x) [1 ··· 3]          deq()→y [5 · 6]
  // B:   enq(y) [2 ··· 4]
  // C:                                    deq()→y [7 · 8]
  it('H4, not linearizable: y is dequeued twice', () => {
    const history: QueueOp[] = [
      done('A', 1, 3, enq('x'), null),
      done('B', 2, 4, enq('y'), null),
      done('A', 5, 6, deq, 'y'),
      done('C', 7, 8, deq, 'y'),
    ];
    assert.equal(queueVerdict(history), 'illegal');
  });

  it('H4 with C reading x instead: linearizable, y was enqueued first', () => {
    const history: QueueOp[] = [
      done('A', 1, 3, enq('x'), null),
      done('B', 2, 4, enq('y'), null),
      done('A', 5, 6, deq, 'y'),
      done('C', 7, 8, deq, 'x'),
    ];
    assert.equal(queueVerdict(history), 'ok');
  });
});

// Lamport's register hierarchy (On Interprocess Communication, 1986): a safe register may return
// anything during a write, a regular one the old or the new value, an atomic (linearizable) one the
// old or the new value with no new-old inversion between reads.
describe('Lamport: safe, regular and atomic registers', () => {
  type RegisterOp = Operation<RegisterInput<number>, RegisterOutput<number>>;
  const register = registerModel(0);
  const write = (value: number): RegisterInput<number> => ({ op: 'write', value });
  const read: RegisterInput<number> = { op: 'read' };
  const verdict = (history: RegisterOp[]): Verdict => checkLinearizable(register, history).result;

  // W: [===== write(1) =====]
  // R:     [read]  [read]
  it('reads overlapping a write may return the old, then the new value', () => {
    for (const [first, second] of [
      [0, 0],
      [0, 1],
      [1, 1],
    ]) {
      const history: RegisterOp[] = [done('W', 0, 10, write(1), null), done('R', 1, 2, read, first!), done('R', 3, 4, read, second!)];
      assert.equal(verdict(history), 'ok', `${first} then ${second}`);
    }
  });

  it('new-old inversion (allowed for a regular register) is not linearizable', () => {
    const history: RegisterOp[] = [done('W', 0, 10, write(1), null), done('R', 1, 2, read, 1), done('R', 3, 4, read, 0)];
    assert.equal(verdict(history), 'illegal');
  });

  it('new-old inversion across two readers is not linearizable either', () => {
    const history: RegisterOp[] = [done('W', 0, 10, write(1), null), done('R1', 1, 2, read, 1), done('R2', 3, 4, read, 0)];
    assert.equal(verdict(history), 'illegal');
  });

  it('a value read during a write that was never written (allowed for a safe register) is not linearizable', () => {
    const history: RegisterOp[] = [done('W', 0, 10, write(1), null), done('R', 1, 2, read, 7)];
    assert.equal(verdict(history), 'illegal');
  });

  // Sequentially consistent (R's read can be ordered before W's write) but not linearizable: the
  // write had returned before the read began.
  it('a stale read after a completed write is sequentially consistent but not linearizable', () => {
    const history: RegisterOp[] = [done('W', 0, 1, write(1), null), done('R', 2, 3, read, 0)];
    assert.equal(verdict(history), 'illegal');
  });

  // W1: [write(1)]
  // W2:            [==== write(2) ====]
  // R:                [read→2] [read→2]
  // S:                  [====== read→1 ======]   overlaps both reads of 2, ordered before them
  it('a slow read may return a value overwritten while it was in flight', () => {
    const history: RegisterOp[] = [
      done('W1', 0, 1, write(1), null),
      done('W2', 2, 10, write(2), null),
      done('R', 3, 4, read, 2),
      done('R', 5, 6, read, 2),
      done('S', 2, 12, read, 1),
    ];
    assert.equal(verdict(history), 'ok');
  });
});
