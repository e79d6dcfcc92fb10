// The sequential specification of Concord's KV API, per key, for the linearizability checker.
//
// Operations, as the client sees them (services/shard's state machine is the implementation):
//   get(key)                         → { found, value, version }     version 0 when not found
//   put(key, value)                  → { version }                   the new version
//   cas(key, expectedVersion, value) → { ok: true, version }         the new version
//                                    | { ok: false, version? }      the current version, if reported
//   delete(key, expectedVersion?)    → { ok: true, deleted?, version? }  whether it existed, its version then
//                                    | { ok: false, version? }      only with an expected version
// An expected version of 0 means "the key must not exist".
//
// Versions are optional in every output: a history from a client that does not report them is
// checked on values alone. When they are reported, the model checks what a client can rely on:
// - the versions of one key strictly increase in linearization order (each write is given a new,
//   larger one; across deletes too, since Concord's version is the log index of the write);
// - a get returns the value *and* the version of the latest write before it;
// - a cas or conditional delete succeeds iff the expected version is the current one.
// Versions need not be consecutive: the system may skip numbers (other keys share the counter).
//
// Per key, the state is a register: present or absent, its value, and what is known of its version.
// A write whose version was not observed (unknown outcome, or not reported) leaves the version
// unknown but bounded: greater than every version known before it (`floor`), and different from the
// versions failed compare-and-sets excluded. The first later output that reports it pins it.
// Two bounds are deliberately not tracked, so the checker can accept a few version-inconsistent
// histories but never rejects a valid one: several unobserved writes in a row only need a later
// reported version above the last known one (not "above it by their number", which would assume
// consecutive integers), and an unobserved version deleted away is forgotten.
//
// Keys are independent registers, so `partition` splits the history by key (P-compositionality).

import { FirstUnplaced } from '../first-unplaced.js';
import { mix32, mixNumber, stringHash } from '../hash.js';
import type { Model, Operation, Partition, Pruner, StepResult } from '../types.js';

export type KvInput<V = string> =
  | { readonly op: 'get'; readonly key: string }
  | { readonly op: 'put'; readonly key: string; readonly value: V }
  | { readonly op: 'cas'; readonly key: string; readonly expectedVersion: number; readonly value: V }
  | { readonly op: 'delete'; readonly key: string; readonly expectedVersion?: number };

export interface KvGetOutput<V = string> {
  readonly found: boolean;
  /** Ignored when not found. */
  readonly value?: V;
  /** Ignored when not found (Concord reports 0). */
  readonly version?: number;
}

export interface KvPutOutput {
  readonly version?: number;
}

export interface KvCasOutput {
  readonly ok: boolean;
  /** ok: the version the write was given. Failed: the key's current version (0: absent), if reported. */
  readonly version?: number;
}

export interface KvDeleteOutput {
  readonly ok: boolean;
  /** ok: whether the key existed. */
  readonly deleted?: boolean;
  /** ok: the version the key had (0: absent). Failed: the key's current version, if reported. */
  readonly version?: number;
}

/** The output type that goes with each input (a get's output for a get, and so on). */
export type KvOutput<V = string> = KvGetOutput<V> | KvPutOutput | KvCasOutput | KvDeleteOutput;

export type KvOperation<V = string> = Operation<KvInput<V>, KvOutput<V>>;

/** What the model knows about one key after a sequence of operations. */
export interface KvKeyState {
  readonly exists: boolean;
  /** valueKey of the value; '' when absent. */
  readonly value: string;
  /** The current version: 0 when absent, undefined when set by a write whose version is unknown. */
  readonly version: number | undefined;
  /** The highest version known to have been given to this key: an unknown version lies above it. */
  readonly floor: number;
  /** Versions an unknown current version is known not to be (failed CAS), all above floor, sorted. */
  readonly excluded: readonly number[];
  readonly hash: number;
}

export interface KvModelOptions<V> {
  /**
   * A string that identifies a value: equal values, equal strings. Default: strings as they are,
   * byte arrays as hex, anything else through JSON.stringify.
   */
  readonly valueKey?: (value: V) => string;
}

/** Builds the KV model over values of type V. `kvModel` is the one for string values. */
export function createKvModel<V = string>(options: KvModelOptions<V> = {}): Model<KvKeyState, KvInput<V>, KvOutput<V>> {
  const valueKey = options.valueKey ?? defaultValueKey;
  return {
    name: 'kv',
    init: () => ABSENT,
    step: (state, input, output) => stepKey(state, input, output, valueKey),
    partition: partitionByKey,
    isReadOnly: isReadOnlyKv,
    pruner: (operations) => new KvPruner(operations, valueKey),
    inputKey: (input) =>
      JSON.stringify([
        input.op,
        input.key,
        input.op === 'put' || input.op === 'cas' ? valueKey(input.value) : null,
        input.op === 'cas' || input.op === 'delete' ? (input.expectedVersion ?? null) : null,
      ]),
    equal: (a, b) =>
      a.hash === b.hash &&
      a.exists === b.exists &&
      a.value === b.value &&
      a.version === b.version &&
      a.floor === b.floor &&
      a.excluded.length === b.excluded.length &&
      a.excluded.every((v, i) => v === b.excluded[i]),
    hash: (state) => state.hash,
    describeOperation: (input, output) => describeKvOperation(input, output, valueKey),
    describeState,
  };
}

export const kvModel: Model<KvKeyState, KvInput<string>, KvOutput<string>> = createKvModel<string>();

function keyState(exists: boolean, value: string, version: number | undefined, floor: number, excluded: readonly number[]): KvKeyState {
  let h = mix32(stringHash(value) ^ (exists ? 0x51ed27 : 0x2c1b3c6d));
  h = version === undefined ? mix32(h ^ 0x6a09e667) : mixNumber(h, version);
  h = mixNumber(h, floor);
  for (const v of excluded) h = mixNumber(h, v);
  return { exists, value, version, floor, excluded, hash: h };
}

const ABSENT: KvKeyState = keyState(false, '', 0, 0, []);

type Step = StepResult<KvKeyState>;
const legal = (next: KvKeyState): Step => ({ ok: true, next });
const illegal = (reason: string): Step => ({ ok: false, reason });

function stepKey<V>(state: KvKeyState, input: KvInput<V>, output: KvOutput<V> | undefined, valueKey: (v: V) => string): Step {
  switch (input.op) {
    case 'get':
      return output === undefined ? legal(state) : stepGet(state, output as KvGetOutput<V>, valueKey);
    case 'put':
      return written(state, valueKey(input.value), (output as KvPutOutput | undefined)?.version);
    case 'cas':
      return stepConditional('cas', state, input.expectedVersion, output as KvCasOutput | undefined, (s, version) =>
        written(s, valueKey(input.value), version),
      );
    case 'delete': {
      const out = output as KvDeleteOutput | undefined;
      const remove = (s: KvKeyState): Step => {
        if (out?.deleted !== undefined && out.deleted !== s.exists) {
          return illegal(`delete reported deleted=${out.deleted} but the key ${s.exists ? 'exists' : 'does not exist'}`);
        }
        const pinned = out?.version === undefined ? s : pinVersion(s, out.version, 'delete reported previous');
        if (typeof pinned === 'string') return illegal(pinned);
        return legal(keyState(false, '', 0, pinned.floor, []));
      };
      if (input.expectedVersion === undefined) {
        if (out !== undefined && !out.ok) return illegal('an unconditional delete cannot fail');
        return remove(state);
      }
      // The previous version a successful conditional delete reports is the expected one: checked by
      // the pin in `remove` after the match pinned it.
      return stepConditional('delete', state, input.expectedVersion, out, (s) => remove(s));
    }
  }
}

/**
 * A get never changes the key; a failed cas or conditional delete did not either, and neither did a
 * delete of a key that was absent. With an unknown outcome only a get is known not to have.
 */
function isReadOnlyKv<V>(input: KvInput<V>, output: KvOutput<V> | undefined): boolean {
  if (input.op === 'get') return true;
  if (output === undefined || input.op === 'put') return false;
  if (input.op === 'cas') return !(output as KvCasOutput).ok;
  const out = output as KvDeleteOutput;
  return !out.ok || out.deleted === false;
}

/**
 * Recognizes branches that cannot succeed, from two facts about a key:
 * - Versions only move forward: every write gets one above `floor`, and `floor` never decreases.
 *   An operation that needs the key at a version it has left behind can never be placed.
 * - A value is only there after one of its writes (absence: after a delete, or at the start). A
 *   get that found value X must be placed before its return, so once the key holds something else
 *   and every write of X called before that return is linearized, the get can never be placed.
 * After a step only what it changed is examined: the floor range it crossed, the content it
 * replaced or was to write. Which writes and reads of a content are still pending is kept in
 * FirstUnplaced indexes, so each check is O(log n).
 */
class KvPruner<V> implements Pruner<KvKeyState> {
  /** What the key can hold: contents[0] is absence, the others are values. */
  private readonly contents: Content[] = [];
  private readonly contentOfValue = new Map<string, number>();
  /** Per operation: the content it may write or the one it read (-1: none), and its position there. */
  private readonly role: Int32Array;
  private readonly position: Int32Array;
  private readonly isWriter: Uint8Array;
  /** Completed operations by each version their output depends on, sorted by version. */
  private readonly byVersion: { readonly version: number; readonly op: number }[] = [];

  constructor(
    private readonly ops: readonly Operation<KvInput<V>, KvOutput<V>>[],
    private readonly valueKey: (value: V) => string,
  ) {
    const n = ops.length;
    this.role = new Int32Array(n).fill(-1);
    this.position = new Int32Array(n);
    this.isWriter = new Uint8Array(n);
    this.contents.push(emptyContent());
    const writers: number[][] = [[]];
    const reads: number[][] = [[]];
    const contentOf = (value: string): number => {
      let id = this.contentOfValue.get(value);
      if (id === undefined) {
        id = this.contents.length;
        this.contentOfValue.set(value, id);
        this.contents.push(emptyContent());
        writers.push([]);
        reads.push([]);
      }
      return id;
    };
    ops.forEach(({ input, output }, i) => {
      switch (input.op) {
        case 'get': {
          const out = output as KvGetOutput<V> | undefined;
          if (out === undefined || (out.found && out.value === undefined)) return;
          this.role[i] = out.found ? contentOf(valueKey(out.value!)) : ABSENCE;
          reads[this.role[i]!]!.push(i);
          return;
        }
        case 'delete':
          if (output !== undefined && !(output as KvDeleteOutput).ok) return;
          this.role[i] = ABSENCE;
          break;
        case 'cas':
          if (output !== undefined && !(output as KvCasOutput).ok) return;
          this.role[i] = contentOf(valueKey(input.value));
          break;
        case 'put':
          this.role[i] = contentOf(valueKey(input.value));
          break;
      }
      this.isWriter[i] = 1;
      writers[this.role[i]!]!.push(i);
    });
    this.contents.forEach((_, id) => {
      const byCall = writers[id]!.sort((a, b) => ops[a]!.call - ops[b]!.call);
      const byReturn = reads[id]!.sort((a, b) => ops[a]!.return! - ops[b]!.return!);
      byCall.forEach((op, p) => (this.position[op] = p));
      byReturn.forEach((op, p) => (this.position[op] = p));
      this.contents[id] = {
        writerCalls: byCall.map((op) => ops[op]!.call),
        writersPlaced: new FirstUnplaced(byCall.length),
        reads: byReturn,
        readsPlaced: new FirstUnplaced(byReturn.length),
      };
    });
    ops.forEach((op, i) => {
      if (op.output === undefined) return;
      for (const version of referencedVersions(op.input, op.output)) this.byVersion.push({ version, op: i });
    });
    this.byVersion.sort((a, b) => a.version - b.version);
  }

  placed(op: number): void {
    this.mark(op, true);
  }

  removed(op: number): void {
    this.mark(op, false);
  }

  findDoomed(
    state: KvKeyState,
    previous: KvKeyState | undefined,
    placed: number | undefined,
    isLinearized: (op: number) => boolean,
  ): number {
    if (previous === undefined || placed === undefined) {
      // At the start the key is absent, so any value's reads may be hopeless already.
      for (let id = 1; id < this.contents.length; id++) {
        const doomed = this.strandedRead(id);
        if (doomed >= 0) return doomed;
      }
      return -1;
    }
    const versionUnchanged =
      previous.floor === state.floor && previous.version === state.version && previous.exists === state.exists;
    for (let i = lowerBound(this.byVersion, previous.floor); !versionUnchanged && i < this.byVersion.length; i++) {
      const { version, op } = this.byVersion[i]!;
      if (version > state.floor) break;
      if (!isLinearized(op) && isDoomedKv(state, this.ops[op]!.input, this.ops[op]!.output!, this.valueKey)) return op;
    }
    const held = this.contentHeld(state);
    const replaced = this.contentHeld(previous);
    const written = this.isWriter[placed] === 1 ? this.role[placed]! : -1;
    for (const id of [replaced, written]) {
      if (id < 0 || id === held) continue;
      const doomed = this.strandedRead(id);
      if (doomed >= 0) return doomed;
    }
    return -1;
  }

  /**
   * The pending read of content `id` (which the key does not hold) due first, if no pending write
   * of it was called by that read's return: then nothing can make the read legal in time. Or -1.
   */
  private strandedRead(id: number): number {
    const content = this.contents[id]!;
    const read = content.readsPlaced.first();
    if (read >= content.reads.length) return -1;
    const op = content.reads[read]!;
    const writer = content.writersPlaced.first();
    const nextWriteCall = writer < content.writerCalls.length ? content.writerCalls[writer]! : Number.POSITIVE_INFINITY;
    return nextWriteCall > this.ops[op]!.return! ? op : -1;
  }

  private contentHeld(state: KvKeyState): number {
    return state.exists ? (this.contentOfValue.get(state.value) ?? -1) : ABSENCE;
  }

  private mark(op: number, placed: boolean): void {
    const id = this.role[op]!;
    if (id < 0) return;
    const content = this.contents[id]!;
    const index = this.isWriter[op] === 1 ? content.writersPlaced : content.readsPlaced;
    if (placed) index.place(this.position[op]!);
    else index.unplace(this.position[op]!);
  }
}

/** The writes and completed reads of one thing the key can hold (a value, or absence). */
interface Content {
  /** Call times of the operations that may write it, in call order. */
  readonly writerCalls: readonly number[];
  readonly writersPlaced: FirstUnplaced;
  /** Completed gets that returned it, in return order. */
  readonly reads: readonly number[];
  readonly readsPlaced: FirstUnplaced;
}

const ABSENCE = 0;

function emptyContent(): Content {
  return { writerCalls: [], writersPlaced: new FirstUnplaced(0), reads: [], readsPlaced: new FirstUnplaced(0) };
}

/** The versions a completed operation's legality depends on (expected and reported ones, not 0). */
function referencedVersions<V>(input: KvInput<V>, output: KvOutput<V>): number[] {
  const versions: number[] = [];
  const reported = (output as { version?: number }).version;
  if (input.op === 'get' && !(output as KvGetOutput<V>).found) return versions;
  if (reported !== undefined && reported !== 0) versions.push(reported);
  if ((input.op === 'cas' || input.op === 'delete') && input.expectedVersion !== undefined && input.expectedVersion !== 0) {
    versions.push(input.expectedVersion);
  }
  return versions;
}

/** The first index whose version is >= `version`. */
function lowerBound(entries: readonly { readonly version: number }[], version: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid]!.version < version) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Whether a completed operation can be linearized neither in `state` nor in any state after it,
 * judging by versions alone (see KvPruner).
 */
function isDoomedKv<V>(state: KvKeyState, input: KvInput<V>, output: KvOutput<V>, valueKey: (v: V) => string): boolean {
  switch (input.op) {
    case 'get': {
      const out = output as KvGetOutput<V>;
      if (!out.found || out.version === undefined) return false;
      if (state.exists && state.version === out.version) return out.value === undefined || valueKey(out.value) !== state.value;
      return versionLeft(state, out.version);
    }
    case 'put':
      return reportedVersionTaken(state, (output as KvPutOutput).version);
    case 'cas': {
      const out = output as KvCasOutput;
      if (!out.ok) return out.version !== undefined && versionLeft(state, out.version);
      return versionLeft(state, input.expectedVersion) || reportedVersionTaken(state, out.version);
    }
    case 'delete': {
      const out = output as KvDeleteOutput;
      if (!out.ok || input.expectedVersion === undefined) return out.version !== undefined && versionLeft(state, out.version);
      return versionLeft(state, input.expectedVersion) || (out.version !== undefined && versionLeft(state, out.version));
    }
  }
}

/** Whether the key can never again be at version `version` (0, absent, it always can). */
function versionLeft(state: KvKeyState, version: number): boolean {
  if (version === 0) return false;
  if (version < state.floor) return true;
  return version === state.floor && !(state.exists && state.version === version);
}

/** Whether a write can no longer be given `version`: it must be above floor. */
function reportedVersionTaken(state: KvKeyState, version: number | undefined): boolean {
  return version !== undefined && version <= state.floor;
}

function stepGet<V>(state: KvKeyState, output: KvGetOutput<V>, valueKey: (v: V) => string): Step {
  if (!output.found) {
    return state.exists ? illegal(`get found nothing but the key holds ${describeState(state)}`) : legal(state);
  }
  if (!state.exists) return illegal(`get read ${describeRead(output, valueKey)} but the key does not exist`);
  if (output.value === undefined) return illegal('get reported found without a value');
  if (valueKey(output.value) !== state.value) {
    return illegal(`get read ${describeRead(output, valueKey)} but the key holds ${describeState(state)}`);
  }
  if (output.version === undefined) return legal(state);
  const pinned = pinVersion(state, output.version, 'get read');
  return typeof pinned === 'string' ? illegal(pinned) : legal(pinned);
}

/** The state after a write of `value`, given the version it reported (if it did). */
function written(state: KvKeyState, value: string, version: number | undefined): Step {
  if (version === undefined) return legal(keyState(true, value, undefined, state.floor, []));
  if (!(version > state.floor)) {
    return illegal(`the write was given version ${version}, but the key already had version ${state.floor}: versions must increase`);
  }
  return legal(keyState(true, value, version, version, []));
}

/**
 * A compare-and-set or conditional delete with expected version `expected`: succeeds (`apply`) iff
 * it matches the current version. With an unknown outcome and an unknown current version it may
 * have gone either way: both states are returned.
 */
function stepConditional(
  what: 'cas' | 'delete',
  state: KvKeyState,
  expected: number,
  output: { readonly ok: boolean; readonly version?: number } | undefined,
  apply: (matched: KvKeyState, version: number | undefined) => Step,
): Step {
  const match = matchVersion(state, expected);
  if (output === undefined) {
    if (match === 'no') return legal(state);
    if (match === 'yes') return apply(state, undefined);
    const applied = apply(pinned(state, expected), undefined);
    const failed = exclude(state, expected);
    return applied.ok ? { ok: true, next: applied.next, alternatives: [failed] } : legal(failed);
  }
  if (output.ok) {
    if (match === 'no') {
      return illegal(`${what} succeeded expecting version ${expected}, but the key is at ${describeVersion(state)}`);
    }
    return apply(match === 'yes' ? state : pinned(state, expected), output.version);
  }
  if (match === 'yes') return illegal(`${what} failed expecting version ${expected}, which is the key's current version`);
  const after = match === 'maybe' ? exclude(state, expected) : state;
  if (output.version === undefined) return legal(after);
  const current = pinVersion(after, output.version, `${what} failed reporting current`);
  return typeof current === 'string' ? illegal(current) : legal(current);
}

function matchVersion(state: KvKeyState, expected: number): 'yes' | 'no' | 'maybe' {
  if (state.version !== undefined) return state.version === expected ? 'yes' : 'no';
  // Present with an unknown version above floor.
  return expected <= state.floor || state.excluded.includes(expected) ? 'no' : 'maybe';
}

/** The state with its unknown version fixed to `version` (the caller checked it is possible). */
function pinned(state: KvKeyState, version: number): KvKeyState {
  return keyState(state.exists, state.value, version, version, []);
}

/** The state with the current version fixed to a reported `version`, or why that is impossible. */
function pinVersion(state: KvKeyState, version: number, what: string): KvKeyState | string {
  if (state.version !== undefined) {
    return state.version === version ? state : `${what} version ${version} but the key is at ${describeVersion(state)}`;
  }
  if (matchVersion(state, version) === 'no') {
    return state.excluded.includes(version)
      ? `${what} version ${version}, which a failed compare-and-set showed the key did not have`
      : `${what} version ${version} but the key's version must be above ${state.floor}`;
  }
  return pinned(state, version);
}

function exclude(state: KvKeyState, version: number): KvKeyState {
  const excluded = [...state.excluded, version].sort((a, b) => a - b);
  return keyState(state.exists, state.value, state.version, state.floor, excluded);
}

function partitionByKey<V>(history: readonly Operation<KvInput<V>, KvOutput<V>>[]): Partition<KvInput<V>, KvOutput<V>>[] {
  const byKey = new Map<string, Operation<KvInput<V>, KvOutput<V>>[]>();
  for (const op of history) {
    let ops = byKey.get(op.input.key);
    if (ops === undefined) {
      ops = [];
      byKey.set(op.input.key, ops);
    }
    ops.push(op);
  }
  return [...byKey].map(([key, operations]) => ({ label: `key ${JSON.stringify(key)}`, operations }));
}

function describeVersion(state: KvKeyState): string {
  if (!state.exists) return 'version 0 (absent)';
  return state.version === undefined ? `an unknown version above ${state.floor}` : `version ${state.version}`;
}

function describeState(state: KvKeyState): string {
  if (!state.exists) return 'absent';
  const version = state.version === undefined ? `v>${state.floor}` : `v${state.version}`;
  return `${JSON.stringify(state.value)} @${version}`;
}

function describeRead<V>(output: KvGetOutput<V>, valueKey: (v: V) => string): string {
  const value = output.value === undefined ? '?' : JSON.stringify(valueKey(output.value));
  return output.version === undefined ? value : `${value} @v${output.version}`;
}

function describeKvOperation<V>(input: KvInput<V>, output: KvOutput<V> | undefined, valueKey: (v: V) => string): string {
  const key = JSON.stringify(input.key);
  const show = (v: V): string => JSON.stringify(valueKey(v));
  let call: string;
  switch (input.op) {
    case 'get':
      call = `get(${key})`;
      break;
    case 'put':
      call = `put(${key}, ${show(input.value)})`;
      break;
    case 'cas':
      call = `cas(${key}, expect v${input.expectedVersion}, ${show(input.value)})`;
      break;
    case 'delete':
      call = input.expectedVersion === undefined ? `delete(${key})` : `delete(${key}, expect v${input.expectedVersion})`;
      break;
  }
  if (output === undefined) return `${call} → ? (outcome unknown)`;
  const version = (v: number | undefined): string => (v === undefined ? '' : ` v${v}`);
  switch (input.op) {
    case 'get': {
      const out = output as KvGetOutput<V>;
      return `${call} → ${out.found ? describeRead(out, valueKey) : 'not found'}`;
    }
    case 'put':
      return `${call} → ok${version((output as KvPutOutput).version)}`;
    case 'cas': {
      const out = output as KvCasOutput;
      return `${call} → ${out.ok ? 'ok' : 'failed'}${version(out.version)}`;
    }
    case 'delete': {
      const out = output as KvDeleteOutput;
      const deleted = out.deleted === undefined ? '' : out.deleted ? ' deleted' : ' not found';
      return `${call} → ${out.ok ? 'ok' : 'failed'}${deleted}${version(out.version)}`;
    }
  }
}

function defaultValueKey(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) {
    let hex = '';
    for (const byte of value) hex += byte.toString(16).padStart(2, '0');
    return `0x${hex}`;
  }
  return JSON.stringify(value) ?? String(value);
}
