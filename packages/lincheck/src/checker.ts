// # Linearizability checker
//
// `checkLinearizable(model, history)` decides whether a concurrent history of operations, each
// known by when it was called, when it returned and what it returned, is linearizable with respect
// to a sequential specification (`Model`): whether there is one total order of the operations that
// (1) respects real time — if A returned before B was called, A comes first — and (2) is a legal
// sequential execution of the model, each operation producing exactly the output it reported
// (Herlihy & Wing 1990). Concord's simulator and cross-process tests record the KV history clients
// observe (`HistoryRecorder`) and check it against `kvModel`.
//
// ## Algorithm
//
// Wing & Gong's depth-first search for a linearization, in the just-in-time form of Lowe, with the
// refinements of Porcupine:
//
// - Events in a doubly linked list. Every operation contributes a call entry and a return entry,
//   sorted by time. The search walks the list from its head: at a call entry it tries to linearize
//   that operation next (step the model from the current state); when that succeeds the operation
//   is *lifted* (both entries unlinked in O(1)) and the walk restarts at the head. Reaching a return
//   entry means that operation is still unlinearized although everything after it in the list
//   began after it ended: a dead end, so the search backtracks — pops the last linearized operation,
//   *unlifts* it (relinks its entries, in reverse order, dancing-links style) and continues after
//   its call entry. Only operations whose call precedes the first pending return are ever candidates,
//   which is exactly the real-time constraint: this is the "just-in-time" linearization.
// - Memoization (Lowe; Porcupine). A search node is fully described by the set of linearized operations and the
//   model state. Each (set, state) pair is entered at most once: before linearizing an operation the
//   checker looks the resulting pair up in a hash table and skips it if seen. Sets are bitsets hashed
//   incrementally (Zobrist: XOR of a fixed random word per operation), so a lookup costs O(n/32)
//   only on a hash match. One refinement for unknown outcomes (below): a node is also skipped when a
//   seen node has the same state, the same completed operations linearized and a *subset* of the
//   unknown ones. Unknown operations are optional, so any way to finish from the new node also
//   finishes from the seen one, and the seen one was (or is being) searched. Without it, k timed-out
//   writes that were overwritten would be explored in all 2^k combinations of "happened or not".
// - Pruning (optional, per model). After each step the model's pruner may name an operation that
//   can no longer be placed (for the KV model: a get of a version the key has moved past, or of a
//   value whose every write is linearized and overwritten). The search then backtracks at once
//   instead of exploring every order of the operations pending until that operation's return.
// - Reads first. When an operation the model marks read-only fits at the current point and leaves
//   the state as it is, it is linearized there with no alternative tried: if any linearization
//   exists from here, moving that read to the front of it gives another (it commutes with
//   everything before its old place, and the real-time order allows it, since every operation that
//   returned before it was called is already placed). Without this, k reads of one value pending
//   together would be tried in 2^k orders each time a write before them has to be undone.
// - P-compositionality (Horn & Kroening 2015, from the locality theorem of Herlihy & Wing). When the
//   model is a product of independent objects — a KV map is one register per key — `model.partition`
//   splits the history and each part is searched on its own. This turns one search exponential in
//   the concurrency of the whole history into many small ones.
// - Iterative: the backtracking stack is an explicit array, so deep histories cannot overflow the
//   call stack. The memo table is bounded (`maxMemoBytes`); when full it is cleared, which can only
//   cost repeated work, never a wrong verdict.
//
// ## Operations of unknown outcome
//
// A client that timed out does not know whether its operation took effect. Such an operation has
// `return: undefined` and `output: undefined`, and is treated as Knossos and Porcupine do: its return
// time is +infinity and its output unconstrained. Exactly:
//
// - It may be linearized at any point after its call, with the output the model gives it there
//   (`model.step` is called with `output` undefined and must succeed), or
// - it may never take effect. The search succeeds once every *completed* operation is linearized;
//   unknown operations still pending then are the ones that never happened. (Equivalently: they are
//   linearized after everything else, where nothing observes them.)
// - It never constrains other operations by real time, because it has no return.
// - Unknown operations the model marks read-only (`isReadOnly`, e.g. a get) are dropped before the
//   search: with no output and no effect they can only cost time.
// - Unknown operations with identical inputs (two timed-out `delete(k)`; `model.inputKey`) are
//   interchangeable, except
//   that the one called first may go anywhere the other may: the search places them in call order.
//   Together with the subset rule of the memo table this keeps timeouts from multiplying the work.
//
// So a timed-out put whose value someone later read is fine (it happened before that read), and one
// whose value nobody read is fine too (it happened unobserved, or not at all); but once a read has
// returned its value, a read called after that one returned may not see an older value.
//
// ## Time ties
//
// Operations are ordered by `call` and `return` on one clock. A return and a call at the same time
// count as concurrent (call entries sort before return entries at equal times), so coarse clocks
// never make the checker reject a valid history; they can only make it accept more.
//
// ## Complexity
//
// Deciding linearizability is NP-complete (Gibbons & Korach 1997), and the search is exponential in
// the worst case: with c operations pending at once, up to 2^c linearized sets and each with several
// states. Memoization bounds the work by the number of distinct (set, state) pairs reachable, which
// real histories keep small: reads pin the state and each return cuts the candidates. With
// partitioning, k keys and n operations cost roughly the sum over keys, near-linear in n when each
// key sees modest concurrency. `maxSteps` bounds one partition's search; when it runs out the verdict
// is 'unknown', never a guess. performance.test.ts holds the budgets Concord relies on: 5,000
// operations over 100 keys check in tens of milliseconds, and a few hundred operations on one key
// with ~45 in flight at once in milliseconds to a few hundred. The hard cases left are single keys
// with thousands of long, overlapping operations, many of unknown outcome, and values not
// distinguished by versions or unique payloads.
//
// ## Explanations
//
// For an illegal history the checker reports the partition (the key, for `kvModel`), the longest
// linearizable prefix it found, the state after it, and the completed operation that could not be
// placed after it with the model's reason — usually enough to read the bug off directly.
//
// ## References
//
// - M. Herlihy, J. Wing. Linearizability: A Correctness Condition for Concurrent Objects. TOPLAS 1990.
// - J. Wing, C. Gong. Testing and Verifying Concurrent Objects. JPDC 17(1), 1993.
// - G. Lowe. Testing for linearizability. Concurrency and Computation: Practice and Experience 29(4), 2017.
// - P. Gibbons, E. Korach. Testing Shared Memories. SIAM J. Computing 26(4), 1997.
// - A. Horn, D. Kroening. Faster linearizability checking via P-compositionality. FORTE 2015.
// - A. Athalye. Porcupine: a fast linearizability checker in Go. github.com/anishathalye/porcupine.
// - K. Kingsbury. Knossos. github.com/jepsen-io/knossos.

import type {
  CheckOptions,
  CheckResult,
  IllegalExplanation,
  Model,
  Operation,
  Partition,
  PartitionReport,
  StepResult,
  Verdict,
} from './types.js';
import { mix32 } from './hash.js';
import { VisitedNodes } from './memo.js';

/**
 * Default search budget per partition. A step costs well under a microsecond for `kvModel`, so this is
 * a few seconds of search at most; the memo table grows with the steps, which is why it is bounded.
 */
export const DEFAULT_MAX_STEPS = 5_000_000;

/** Default bound on the memo table of one partition's search, in (estimated) bytes. */
export const DEFAULT_MAX_MEMO_BYTES = 256 * 1024 * 1024;

/** How many operations of the prefix an explanation message lists (the last ones). */
const EXPLANATION_PREFIX_LINES = 12;

export function checkLinearizable<State, Input, Output>(
  model: Model<State, Input, Output>,
  history: readonly Operation<Input, Output>[],
  options: CheckOptions = {},
): CheckResult<Input, Output> {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!Number.isSafeInteger(maxSteps) || maxSteps < 1) {
    throw new RangeError(`checkLinearizable: maxSteps must be a positive integer, got ${maxSteps}`);
  }
  const maxMemoBytes = options.maxMemoBytes ?? DEFAULT_MAX_MEMO_BYTES;
  if (!(maxMemoBytes >= 0)) throw new RangeError(`checkLinearizable: maxMemoBytes must be >= 0, got ${maxMemoBytes}`);
  history.forEach(validateOperation);

  const partitions: Partition<Input, Output>[] = model.partition
    ? model.partition(history)
    : [{ label: model.name, operations: history }];

  const reports: PartitionReport[] = [];
  let steps = 0;
  let anyUnknown = false;
  let illegal: IllegalExplanation<Input, Output> | undefined;
  for (const partition of partitions) {
    const operations = partition.operations.filter(
      (op) => !(op.return === undefined && model.isReadOnly?.(op.input, undefined) === true),
    );
    const outcome = searchLinearization(model, operations, maxSteps, maxMemoBytes);
    steps += outcome.steps;
    reports.push({ label: partition.label, result: outcome.verdict, operations: operations.length, steps: outcome.steps });
    if (outcome.verdict === 'unknown') anyUnknown = true;
    if (outcome.verdict === 'illegal' && illegal === undefined) {
      illegal = explain(model, partition.label, operations, outcome.deadEnd);
    }
  }
  const result: Verdict = illegal !== undefined ? 'illegal' : anyUnknown ? 'unknown' : 'ok';
  return illegal !== undefined ? { result, partitions: reports, steps, illegal } : { result, partitions: reports, steps };
}

/** One line for an operation: client, interval and the model's description. */
export function describeOperation<Input, Output>(model: Model<unknown, Input, Output>, op: Operation<Input, Output>): string {
  const interval = `${op.call}..${op.return === undefined ? '?' : op.return}`;
  return `[client ${String(op.clientId)} ${interval}] ${model.describeOperation(op.input, op.output)}`;
}

function validateOperation(op: Operation<unknown, unknown>, index: number): void {
  const where = `history[${index}] (client ${String(op.clientId)})`;
  if (!Number.isFinite(op.call)) throw new RangeError(`${where}: call time ${op.call} is not a finite number`);
  if (op.return === undefined) {
    if (op.output !== undefined) {
      throw new RangeError(`${where}: an operation of unknown outcome (return undefined) cannot have an output`);
    }
    return;
  }
  if (!Number.isFinite(op.return)) throw new RangeError(`${where}: return time ${op.return} is not a finite number`);
  if (op.return < op.call) throw new RangeError(`${where}: returns at ${op.return}, before its call at ${op.call}`);
  if (op.output === undefined) {
    throw new RangeError(`${where}: a completed operation needs an output (return undefined marks an unknown outcome)`);
  }
}

/** Where the search got deepest before having to backtrack, kept for the explanation. */
interface DeadEnd<State> {
  /** Indices (into the partition's operations) of the linearized prefix, in order. */
  readonly prefix: number[];
  readonly state: State;
  /** The completed operation whose return entry was reached unlinearized. */
  readonly blocked: number;
}

type SearchOutcome<State> =
  | { readonly verdict: 'ok' | 'unknown'; readonly steps: number }
  | { readonly verdict: 'illegal'; readonly steps: number; readonly deadEnd: DeadEnd<State> };

/** The search for one partition. Returns 'illegal' with the deepest dead end when none exists. */
function searchLinearization<State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: readonly Operation<Input, Output>[],
  maxSteps: number,
  maxMemoBytes: number,
): SearchOutcome<State> {
  const n = ops.length;
  let completedLeft = 0;
  for (const op of ops) if (op.return !== undefined) completedLeft++;
  if (completedLeft === 0) return { verdict: 'ok', steps: 0 };

  const readOnly = new Uint8Array(n);
  for (let i = 0; i < n; i++) readOnly[i] = model.isReadOnly?.(ops[i]!.input, ops[i]!.output) === true ? 1 : 0;

  // Entry list. Entries 0..m-1 (calls and returns), `head` a sentinel closing the circle. Unknown
  // operations have no return entry: at +infinity it could only be reached once every completed
  // operation is linearized, and the search stops there.
  const events: { time: number; isCall: boolean; op: number }[] = [];
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    events.push({ time: op.call, isCall: true, op: i });
    if (op.return !== undefined) events.push({ time: op.return, isCall: false, op: i });
  }
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1));
  const m = events.length;
  const head = m;
  const next = new Int32Array(m + 1);
  const prev = new Int32Array(m + 1);
  const entryOp = new Int32Array(m);
  const entryIsCall = new Uint8Array(m);
  const returnEntry = new Int32Array(m).fill(-1); // indexed by call entry
  const callEntryOf = new Int32Array(n);
  for (let e = 0; e < m; e++) {
    const event = events[e]!;
    entryOp[e] = event.op;
    entryIsCall[e] = event.isCall ? 1 : 0;
    if (event.isCall) callEntryOf[event.op] = e;
    else returnEntry[callEntryOf[event.op]!] = e;
    next[e] = e + 1;
    prev[e] = e === 0 ? head : e - 1;
  }
  next[head] = m === 0 ? head : 0;
  prev[head] = m - 1;
  next[m - 1] = head;

  const unlink = (e: number): void => {
    next[prev[e]!] = next[e]!;
    prev[next[e]!] = prev[e]!;
  };
  const relink = (e: number): void => {
    next[prev[e]!] = e;
    prev[next[e]!] = e;
  };
  const lift = (callEntry: number): void => {
    unlink(callEntry);
    const ret = returnEntry[callEntry]!;
    if (ret >= 0) unlink(ret);
  };
  const unlift = (callEntry: number): void => {
    const ret = returnEntry[callEntry]!;
    if (ret >= 0) relink(ret);
    relink(callEntry);
  };

  // The linearized set: a bitset plus a Zobrist hash, both updated in O(1) per operation. The hash
  // covers completed operations only, so nodes that differ only in unknown ones share a bucket and
  // the subset test below can see them.
  const words = (n + 31) >>> 5;
  const linearized = new Uint32Array(words);
  const completedMask = new Uint32Array(words);
  const zobrist = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (ops[i]!.return === undefined) continue;
    completedMask[i >>> 5] = completedMask[i >>> 5]! | (1 << (i & 31));
    zobrist[i] = mix32(Math.imul(i + 1, 0x9e3779b9));
  }
  let linearizedHash = 0;
  const isLinearized = (op: number): boolean => (linearized[op >>> 5]! & (1 << (op & 31))) !== 0;
  const twinBefore = unknownTwins(model, ops);
  const visited = new VisitedNodes<State>(words, completedMask, (a, b) => model.equal(a, b), maxMemoBytes);

  /**
   * The first choice at or after `from` of a successful step whose (set ∪ {op}, state) is new;
   * records it in the memo table. -1 if all were seen before.
   */
  const firstUnseenChoice = (step: StepResult<State> & { ok: true }, from: number, op: number): number => {
    const choices = 1 + (step.alternatives?.length ?? 0);
    const word = op >>> 5;
    const bit = 1 << (op & 31);
    linearized[word] = linearized[word]! | bit;
    const setHash = linearizedHash ^ zobrist[op]!;
    for (let choice = from; choice < choices; choice++) {
      const state = choice === 0 ? step.next : step.alternatives![choice - 1]!;
      const key = (setHash ^ Math.imul(model.hash(state) | 0, 0x85ebca6b)) | 0;
      if (!visited.visit(key, linearized, state)) continue;
      linearized[word] = linearized[word]! & ~bit;
      return choice;
    }
    linearized[word] = linearized[word]! & ~bit;
    return -1;
  };

  const pruner = model.pruner?.(ops);

  // The backtracking stack: per linearized operation, its call entry, the state before it, the step
  // that linearized it, which of that step's choices is current, and whether it was placed greedily.
  const stackEntry: number[] = [];
  const stackState: State[] = [];
  const stackStep: (StepResult<State> & { ok: true })[] = [];
  const stackChoice: number[] = [];
  const stackGreedy: boolean[] = [];

  let state = model.init();
  let steps = 0;
  let deadEnd: DeadEnd<State> | undefined;

  /** Linearizes the operation of `callEntry` with the given choice of its step. */
  const push = (callEntry: number, step: StepResult<State> & { ok: true }, choice: number, greedy: boolean): void => {
    const op = entryOp[callEntry]!;
    stackEntry.push(callEntry);
    stackGreedy.push(greedy);
    stackState.push(state);
    stackStep.push(step);
    stackChoice.push(choice);
    state = choice === 0 ? step.next : step.alternatives![choice - 1]!;
    linearized[op >>> 5] = linearized[op >>> 5]! | (1 << (op & 31));
    linearizedHash ^= zobrist[op]!;
    lift(callEntry);
    if (ops[op]!.return !== undefined) completedLeft--;
    pruner?.placed?.(op);
  };

  /** An operation the last step made unplaceable, per the model's pruner; or -1. */
  const findDoomed = (): number => {
    if (pruner === undefined) return -1;
    if (stackEntry.length === 0) return pruner.findDoomed(state, undefined, undefined, isLinearized);
    return pruner.findDoomed(state, stackState[stackState.length - 1], entryOp[stackEntry[stackEntry.length - 1]!]!, isLinearized);
  };
  /** Keeps the deepest point where `blocked` could not be placed, for the explanation. */
  const recordDeadEnd = (blocked: number): void => {
    if (deadEnd === undefined || stackEntry.length > deadEnd.prefix.length) {
      deadEnd = { prefix: stackEntry.map((e) => entryOp[e]!), state, blocked };
    }
  };

  // The search loop. `fresh`: just arrived at a node, which first gets the node-wide checks (an
  // unplaceable operation, a read to place greedily); then its candidates are scanned from the head.
  let fresh = true;
  let entry = head;
  search: for (;;) {
    if (++steps > maxSteps) return { verdict: 'unknown', steps: steps - 1 };
    nodeFails: {
      if (fresh) {
        fresh = false;
        if (completedLeft === 0) return { verdict: 'ok', steps };
        const doomed = findDoomed();
        if (doomed >= 0) {
          recordDeadEnd(doomed);
          break nodeFails;
        }
        for (let e = next[head]!; e !== head && entryIsCall[e] === 1; e = next[e]!) {
          const opIndex = entryOp[e]!;
          if (readOnly[opIndex] === 0) continue;
          const op = ops[opIndex]!;
          const step = model.step(state, op.input, op.output);
          if (!step.ok || (step.alternatives?.length ?? 0) > 0 || !model.equal(step.next, state)) continue;
          // A read that fits and changes nothing: this node succeeds iff its child does.
          if (firstUnseenChoice(step, 0, opIndex) < 0) break nodeFails;
          push(e, step, 0, true);
          fresh = true;
          continue search;
        }
        entry = next[head]!;
      }

      if (entry === head) throw new Error('linearizability search ran off the entry list with operations left');
      if (entryIsCall[entry] === 0) {
        // A return entry of an operation not yet linearized: nothing can be placed before it.
        recordDeadEnd(entryOp[entry]!);
        break nodeFails;
      }
      const opIndex = entryOp[entry]!;
      const op = ops[opIndex]!;
      const twin = twinBefore[opIndex]!;
      if (twin >= 0 && !isLinearized(twin)) {
        entry = next[entry]!;
        continue search;
      }
      const step = model.step(state, op.input, op.output);
      const choice = step.ok ? firstUnseenChoice(step, 0, opIndex) : -1;
      if (step.ok && choice >= 0) {
        push(entry, step, choice, false);
        fresh = true;
      } else {
        entry = next[entry]!;
      }
      continue search;
    }

    // Backtrack: undo the last linearized operation and try its next choice, or the entries after
    // it. A greedily placed read stands for its whole node, so undoing it fails that node too.
    for (;;) {
      if (stackEntry.length === 0) {
        // The first backtrack always starts at a return entry, which records a dead end.
        if (deadEnd === undefined) throw new Error('linearizability search failed without a dead end');
        return { verdict: 'illegal', steps, deadEnd };
      }
      const callEntry = stackEntry.pop()!;
      const step = stackStep.pop()!;
      const choice = stackChoice.pop()!;
      const wasGreedy = stackGreedy.pop()!;
      state = stackState.pop()!;
      const op = entryOp[callEntry]!;
      linearized[op >>> 5] = linearized[op >>> 5]! & ~(1 << (op & 31));
      linearizedHash ^= zobrist[op]!;
      unlift(callEntry);
      if (ops[op]!.return !== undefined) completedLeft++;
      pruner?.removed?.(op);
      if (wasGreedy) continue;
      const nextChoice = firstUnseenChoice(step, choice + 1, op);
      if (nextChoice >= 0) {
        push(callEntry, step, nextChoice, false);
        fresh = true;
      } else {
        entry = next[callEntry]!;
      }
      continue search;
    }
  }
}

/**
 * For each operation of unknown outcome, the previous one (by call time) with an identical input
 * (same model.inputKey), or -1. Such twins are interchangeable, except that the earlier one may be
 * placed anywhere the later one may: so the search places them in call order.
 */
function unknownTwins<Input, Output>(model: Model<unknown, Input, Output>, ops: readonly Operation<Input, Output>[]): Int32Array {
  const twinBefore = new Int32Array(ops.length).fill(-1);
  if (model.inputKey === undefined) return twinBefore;
  const lastByInput = new Map<string, number>();
  const order = ops.map((_, i) => i).filter((i) => ops[i]!.return === undefined);
  order.sort((a, b) => ops[a]!.call - ops[b]!.call || a - b);
  for (const i of order) {
    const key = model.inputKey(ops[i]!.input);
    const previous = lastByInput.get(key);
    if (previous !== undefined) twinBefore[i] = previous;
    lastByInput.set(key, i);
  }
  return twinBefore;
}

function explain<State, Input, Output>(
  model: Model<State, Input, Output>,
  label: string,
  ops: readonly Operation<Input, Output>[],
  deadEnd: DeadEnd<State>,
): IllegalExplanation<Input, Output> {
  const linearizedPrefix = deadEnd.prefix.map((i) => ops[i]!);
  const unplaceable = ops[deadEnd.blocked]!;
  const step = model.step(deadEnd.state, unplaceable.input, unplaceable.output);
  const reason = step.ok
    ? 'every order that places it here leaves a later operation unplaceable'
    : step.reason;
  const stateAfterPrefix = model.describeState(deadEnd.state);
  const shown = linearizedPrefix.slice(-EXPLANATION_PREFIX_LINES);
  const lines = [
    `not linearizable: ${label}`,
    `  cannot place: ${describeOperation(model, unplaceable)}`,
    `  because: ${reason}`,
    `  after the longest linearizable prefix found (${linearizedPrefix.length} operations), state ${stateAfterPrefix}` +
      (shown.length < linearizedPrefix.length ? `; its last ${shown.length}:` : shown.length > 0 ? ':' : ''),
    ...shown.map((op, i) => `    ${linearizedPrefix.length - shown.length + i + 1}. ${describeOperation(model, op)}`),
  ];
  return { partition: label, linearizedPrefix, stateAfterPrefix, unplaceable, reason, message: lines.join('\n') };
}

