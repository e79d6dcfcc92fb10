// Records a concurrent history as clients observe it, for checkLinearizable.
//
//   const h = new HistoryRecorder<KvInput, KvOutput>(() => performance.now());
//   const id = h.invoke('client-3', { op: 'put', key: 'x', value: '1' });   // before sending
//   try { const { version } = await client.put('x', '1'); h.ok(id, { version }); }   // after the answer
//   catch { h.unknown(id); }                       // timed out / connection lost: may have happened
//   checkLinearizable(kvModel, h.history());
//
// Timestamps must bracket the operation: `invoke` strictly before the request can reach the system
// and `ok` strictly after the answer arrived, all on one clock. Anything else can make a correct
// system look non-linearizable. Without a clock, a logical one gives every event its own tick in
// recording order — right for a single-threaded simulator, where recording order is real order.

import type { ClientId, Operation } from './types.js';

/** Reads the current time: a function, or an object with now() (e.g. `performance`). */
export type Clock = (() => number) | { now(): number };

/** Identifies an invoked operation within its recorder. */
export type OperationId = number;

interface Recorded<Input, Output> {
  clientId: ClientId;
  input: Input;
  call: number;
  return: number | undefined;
  output: Output | undefined;
  state: 'pending' | 'ok' | 'unknown' | 'discarded';
}

export class HistoryRecorder<Input, Output> {
  private readonly now: () => number;
  private readonly recorded: Recorded<Input, Output>[] = [];
  private logicalTime = 0;
  private lastTime = Number.NEGATIVE_INFINITY;

  constructor(clock?: Clock) {
    if (clock === undefined) this.now = () => this.logicalTime++;
    else if (typeof clock === 'function') this.now = clock;
    else this.now = () => clock.now();
  }

  /** Records the call of an operation; call it before the request is sent. */
  invoke(clientId: ClientId, input: Input): OperationId {
    this.recorded.push({ clientId, input, call: this.time(), return: undefined, output: undefined, state: 'pending' });
    return this.recorded.length - 1;
  }

  /** Records that the operation completed with `output`; call it after the answer arrived. */
  ok(id: OperationId, output: Output): void {
    const op = this.pending(id, 'ok');
    if (output === undefined) throw new RangeError(`operation ${id}: ok() needs an output; use unknown() when there is none`);
    op.return = this.time();
    op.output = output;
    op.state = 'ok';
  }

  /**
   * Records that the client cannot know whether the operation took effect (timeout, lost
   * connection, ambiguous error): it may have happened at any time after its call, or never.
   */
  unknown(id: OperationId): void {
    this.pending(id, 'unknown').state = 'unknown';
  }

  /**
   * Removes an operation the system *definitely* did not apply (e.g. rejected before it was
   * proposed). Only for errors that guarantee it: a timeout is unknown(), not this, or the checker
   * will reject correct histories.
   */
  discard(id: OperationId): void {
    this.pending(id, 'discard').state = 'discarded';
  }

  /** Operations invoked and not yet resolved by ok(), unknown() or discard(). */
  get pendingCount(): number {
    return this.recorded.filter((op) => op.state === 'pending').length;
  }

  /**
   * The history so far, in invocation order. Operations still pending (the client never learned an
   * outcome, e.g. it crashed) count as unknown outcomes, like those marked unknown().
   */
  history(): Operation<Input, Output>[] {
    const out: Operation<Input, Output>[] = [];
    for (const op of this.recorded) {
      if (op.state === 'discarded') continue;
      out.push({ clientId: op.clientId, input: op.input, call: op.call, return: op.return, output: op.output });
    }
    return out;
  }

  private pending(id: OperationId, action: string): Recorded<Input, Output> {
    const op = this.recorded[id];
    if (op === undefined) throw new RangeError(`${action}(${id}): no such operation`);
    if (op.state !== 'pending') throw new Error(`${action}(${id}): operation already recorded as ${op.state}`);
    return op;
  }

  /** The clock, checked to never go backwards: a clock that does would invert real-time order. */
  private time(): number {
    const t = this.now();
    if (!Number.isFinite(t)) throw new RangeError(`clock returned ${t}`);
    if (t < this.lastTime) throw new RangeError(`clock went backwards: ${t} after ${this.lastTime}`);
    this.lastTime = t;
    return t;
  }
}
