// Pending ReadIndex requests on a leader (thesis §6.4). Each request remembers the commit index at
// the time it arrived and collects heartbeat acknowledgements carrying its context; once a majority
// of voters acknowledged, leadership was confirmed *after* the request arrived, so its read index is
// safe to serve — and so is every older request, whose heartbeat round started earlier.
import type { NodeId } from './types.js';

export interface ReadRequest {
  /** The leader's commit index when the request arrived. */
  index: number;
  context: Uint8Array;
  /** Who asked: the leader itself (a local readIndex call) or the follower that forwarded it. */
  from: NodeId;
  acks: Set<NodeId>;
}

/** A stable map key for a request context. */
export function contextKey(context: Uint8Array): string {
  let key = '';
  for (const byte of context) key += byte.toString(16).padStart(2, '0');
  return key;
}

export class ReadIndexQueue {
  private readonly byKey = new Map<string, ReadRequest>();
  private order: string[] = [];

  get size(): number {
    return this.order.length;
  }

  has(context: Uint8Array): boolean {
    return this.byKey.has(contextKey(context));
  }

  /** Adds a request; false when one with the same context is already pending (contexts must be unique). */
  add(index: number, context: Uint8Array, from: NodeId): boolean {
    const key = contextKey(context);
    if (this.byKey.has(key)) return false;
    this.byKey.set(key, { index, context, from, acks: new Set() });
    this.order.push(key);
    return true;
  }

  /** Records that `from` acknowledged the heartbeat round of `context`; returns the acks so far. */
  recvAck(from: NodeId, context: Uint8Array): ReadonlySet<NodeId> | undefined {
    const request = this.byKey.get(contextKey(context));
    if (request === undefined) return undefined;
    request.acks.add(from);
    return request.acks;
  }

  /** Removes and returns every request up to and including the one with `context`, oldest first. */
  releaseThrough(context: Uint8Array): ReadRequest[] {
    const key = contextKey(context);
    const at = this.order.indexOf(key);
    if (at < 0) return [];
    const released = this.order.slice(0, at + 1);
    this.order = this.order.slice(at + 1);
    const out: ReadRequest[] = [];
    for (const k of released) {
      const request = this.byKey.get(k);
      this.byKey.delete(k);
      if (request !== undefined) out.push(request);
    }
    return out;
  }

  /** The newest pending context: heartbeats carry it so that a lost round is retried. */
  lastContext(): Uint8Array | undefined {
    const key = this.order.at(-1);
    return key === undefined ? undefined : this.byKey.get(key)?.context;
  }

  clear(): void {
    this.byKey.clear();
    this.order = [];
  }
}
