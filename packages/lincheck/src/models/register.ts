// A single read/write register: the smallest model, and the one of the textbook examples
// (Lamport's atomic registers, Herlihy & Wing). Its state is the valueKey of the current value.

import { stringHash } from '../hash.js';
import type { Model } from '../types.js';

export type RegisterInput<V> = { readonly op: 'write'; readonly value: V } | { readonly op: 'read' };

/** A read returns the value; a write completes with null. */
export type RegisterOutput<V> = V | null;

/**
 * A register holding `initial` before the first write. `valueKey` identifies values (equal values,
 * equal strings); by default JSON.stringify.
 */
export function registerModel<V>(
  initial: V,
  valueKey: (value: V) => string = (value) => JSON.stringify(value) ?? String(value),
): Model<string, RegisterInput<V>, RegisterOutput<V>> {
  return {
    name: 'register',
    init: () => valueKey(initial),
    step: (state, input, output) => {
      if (input.op === 'write') return { ok: true, next: valueKey(input.value) };
      if (output === undefined || valueKey(output as V) === state) return { ok: true, next: state };
      return { ok: false, reason: `read ${valueKey(output as V)} but the register holds ${state}` };
    },
    isReadOnly: (input) => input.op === 'read',
    inputKey: (input) => (input.op === 'write' ? `write ${valueKey(input.value)}` : 'read'),
    equal: (a, b) => a === b,
    hash: stringHash,
    describeOperation: (input, output) => {
      const call = input.op === 'write' ? `write(${valueKey(input.value)})` : 'read()';
      if (output === undefined) return `${call} → ? (outcome unknown)`;
      return input.op === 'write' ? `${call} → ok` : `${call} → ${valueKey(output as V)}`;
    },
    describeState: (state) => state,
  };
}
