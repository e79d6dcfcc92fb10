// Terse constructors for hand-written histories in tests.

import type { KvInput } from '../models/kv.js';
import type { ClientId, Operation } from '../types.js';

/** A completed operation: called at `call`, returned `output` at `ret`. */
export function done<I, O>(clientId: ClientId, call: number, ret: number, input: I, output: O): Operation<I, O> {
  return { clientId, input, call, return: ret, output };
}

/** An operation of unknown outcome called at `call` (the client timed out). */
export function timedOut<I, O>(clientId: ClientId, call: number, input: I): Operation<I, O> {
  return { clientId, input, call, return: undefined, output: undefined };
}

export const kv = {
  get: (key: string): KvInput => ({ op: 'get', key }),
  put: (key: string, value: string): KvInput => ({ op: 'put', key, value }),
  cas: (key: string, expectedVersion: number, value: string): KvInput => ({ op: 'cas', key, expectedVersion, value }),
  delete: (key: string, expectedVersion?: number): KvInput =>
    expectedVersion === undefined ? { op: 'delete', key } : { op: 'delete', key, expectedVersion },
};
