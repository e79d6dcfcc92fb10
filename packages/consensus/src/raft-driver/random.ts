// Randomness for the Raft core's election jitter. The core takes a `() => number` in [0, 1) so that
// simulations replay from a seed; production seeds the same generator from the OS.

import { randomInt } from 'node:crypto';

/** mulberry32: small, fast, and good enough to spread election timeouts. Same seed, same sequence. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A seededRandom whose seed comes from the OS: members started at the same moment must not draw
 * the same timeouts, or their elections would keep splitting the vote.
 */
export function cryptoSeededRandom(): () => number {
  return seededRandom(randomInt(0, 2 ** 32));
}
