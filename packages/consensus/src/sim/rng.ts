// Seeded randomness for the simulator. One SEED derives every stream; each concern (network,
// faults, clients, each node's election jitter, …) draws from its own stream, so that adding a draw
// in one place does not reshuffle every other decision of the run.
import { mulberry32 } from '../raft/testing/rng.js';

/** A 32-bit hash of a string (FNV-1a), for deriving stream seeds from names. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The seed of the stream `name` of a run with seed `seed` (splitmix-style finalizer). */
export function deriveSeed(seed: number, name: string): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) ^ hashString(name)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class SimRng {
  readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  static derive(seed: number, name: string): SimRng {
    return new SimRng(deriveSeed(seed, name));
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi], both included. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('sim rng: pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}
