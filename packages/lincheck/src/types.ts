// The vocabulary shared by the checker, the models and the history recorder.

/** Who issued an operation; only used in explanations. */
export type ClientId = string | number;

/**
 * One operation of a concurrent history, as a client saw it.
 *
 * `call` is taken before the request leaves the client and `return` after its answer arrived, on one
 * clock for the whole history (logical or milliseconds: only the order matters). An operation whose
 * outcome is unknown (timed out, connection lost, client crashed) has `return` and `output`
 * undefined: it may have taken effect at any moment after `call`, or never (see checker.ts).
 */
export interface Operation<Input, Output> {
  readonly clientId: ClientId;
  readonly input: Input;
  readonly call: number;
  readonly return: number | undefined;
  readonly output: Output | undefined;
}

/**
 * The result of applying one operation to a state in the sequential specification.
 *
 * `ok: false` means the operation, with the output it reported, cannot happen in this state; `reason`
 * says why, in words fit for an explanation ("get read \"a\" but the key holds \"b\"").
 * `alternatives` lists further states the operation may equally have produced: the specification is
 * nondeterministic there (e.g. a compare-and-set of unknown outcome against a version the history
 * never revealed either matched or did not). The checker explores `next` and every alternative.
 */
export type StepResult<State> =
  | { readonly ok: true; readonly next: State; readonly alternatives?: readonly State[] }
  | { readonly ok: false; readonly reason: string };

/** A part of a history that can be checked on its own, with a label for explanations. */
export interface Partition<Input, Output> {
  readonly label: string;
  readonly operations: readonly Operation<Input, Output>[];
}

/**
 * A sequential specification the checker searches against.
 *
 * States must be immutable values: `step` returns new states and never changes the one it is given,
 * because the checker keeps old states to backtrack to and as memoization keys.
 */
export interface Model<State, Input, Output> {
  /** For explanations, e.g. "kv". */
  readonly name: string;
  /** The state before any operation. */
  init(): State;
  /**
   * Applies `input` to `state`, given the `output` the operation reported. `output` is undefined when
   * the outcome is unknown: the operation then took effect with whatever output the specification
   * gives it, so the step must succeed in every state (the checker relies on it).
   */
  step(state: State, input: Input, output: Output | undefined): StepResult<State>;
  /**
   * Splits a history into independently checkable parts. Valid when the model is a product of
   * independent objects, e.g. one register per key: by the locality of linearizability (Herlihy &
   * Wing) the history is linearizable iff every part is. Without it the history is checked whole.
   */
  partition?(history: readonly Operation<Input, Output>[]): Partition<Input, Output>[];
  /**
   * True when the operation, with this output (undefined: unknown outcome), does not change the
   * object: a get, or a compare-and-set that reported failure. Its step may still return a
   * different state to record what its output revealed (e.g. a version), but only by narrowing:
   * whatever is legal after it must be legal without it. The checker drops read-only operations of
   * unknown outcome, and linearizes one as soon as it fits when its step leaves the state unchanged.
   */
  isReadOnly?(input: Input, output: Output | undefined): boolean;
  /**
   * Optional pruning, built once per partition (with the partition's operations, after dropping
   * unknown read-only ones). Without it the search is still exact, only slower on some histories.
   */
  pruner?(operations: readonly Operation<Input, Output>[]): Pruner<State>;
  /**
   * Optional: a string equal exactly for inputs that behave identically in every state (the same
   * operation with the same arguments). Lets the checker treat timed-out twins as interchangeable.
   */
  inputKey?(input: Input): string;
  equal(a: State, b: State): boolean;
  /** A 32-bit hash consistent with `equal`. */
  hash(state: State): number;
  describeOperation(input: Input, output: Output | undefined): string;
  describeState(state: State): string;
}

/**
 * Domain knowledge that lets the search abandon a branch as soon as it is hopeless, instead of when
 * it runs into a return it cannot meet: e.g. a key's version has moved past one a completed get
 * reported, or the only write of a value a get returned has been overwritten. Operations are
 * identified by their index in the partition given to Model.pruner.
 */
export interface Pruner<State> {
  /** The search linearized operation `operation`. */
  placed?(operation: number): void;
  /** The search took operation `operation` back (always the last one placed and not yet removed). */
  removed?(operation: number): void;
  /**
   * A completed operation, not linearized, that no continuation of the current partial
   * linearization can place: whatever order the operations not yet linearized take (within real
   * time), the model rejects it or its return passes first. Or -1.
   * `previous` and `placed` are the state before and the operation of the last step; both undefined
   * when the search starts. Earlier states were checked before, so only what the last step changed
   * needs looking at. It must never name an operation that some continuation could still place:
   * that would reject linearizable histories.
   */
  findDoomed(
    state: State,
    previous: State | undefined,
    placed: number | undefined,
    isLinearized: (operation: number) => boolean,
  ): number;
}

export type Verdict = 'ok' | 'illegal' | 'unknown';

export interface CheckOptions {
  /**
   * Search budget per partition, in iterations of the search loop (each examines one candidate
   * operation or node, or backtracks once). A partition that exhausts it is reported 'unknown'.
   * Steps rather than wall time, so that a verdict replays exactly from a seed. Default
   * DEFAULT_MAX_STEPS.
   */
  readonly maxSteps?: number;
  /**
   * Bound on the memory of one partition's memo table, in estimated bytes (each entry holds a bitset
   * of the partition's operations). When reached the table is cleared: the verdict stays exact, the
   * search may only repeat work. Default DEFAULT_MAX_MEMO_BYTES (256 MiB).
   */
  readonly maxMemoBytes?: number;
}

export interface PartitionReport {
  readonly label: string;
  readonly result: Verdict;
  /** Operations searched (unknown-outcome read-only operations are dropped first). */
  readonly operations: number;
  readonly steps: number;
}

/** Why a partition is not linearizable: where the search got furthest, and what stopped it. */
export interface IllegalExplanation<Input, Output> {
  readonly partition: string;
  /** The longest linearizable prefix the search found, in linearization order. */
  readonly linearizedPrefix: readonly Operation<Input, Output>[];
  /** model.describeState of the state after that prefix. */
  readonly stateAfterPrefix: string;
  /**
   * A completed operation that no extension of the prefix can place: its return comes before any
   * other pending operation could make it legal.
   */
  readonly unplaceable: Operation<Input, Output>;
  /** Why the model rejects `unplaceable` right after the prefix. */
  readonly reason: string;
  /** All of the above as text, for a test failure or a simulator log. */
  readonly message: string;
}

export interface CheckResult<Input, Output> {
  /** 'illegal' if any partition is, else 'unknown' if any search ran out of budget, else 'ok'. */
  readonly result: Verdict;
  readonly partitions: readonly PartitionReport[];
  /** Total search steps over all partitions. */
  readonly steps: number;
  /** For 'illegal': the first illegal partition, explained. */
  readonly illegal?: IllegalExplanation<Input, Output>;
}
