// Random KV histories that are linearizable by construction, for tests and benchmarks of the checker.
//
// Clients issue operations one after another, each with a random duration. Every operation that
// takes effect is given a linearization point inside its interval (an operation of unknown outcome:
// anywhere after its call, or never), and the operations run in the order of those points against a
// plain in-memory store with Concord's semantics (shard state machine: versions are a shared
// counter, expected version 0 means absent). So each output is what a correct system could return.

import type { KvInput, KvOperation, KvOutput } from '../models/kv.js';

export interface RandomKvHistoryOptions {
  readonly seed: number;
  readonly operations: number;
  readonly clients: number;
  readonly keys: number;
  /** Values are drawn from this many per key; 0: every write has a fresh value. */
  readonly values: number;
  /** Probability that an operation's outcome is unknown (the client timed out). */
  readonly unknownRate: number;
  /** Which outputs carry versions. */
  readonly versions: 'all' | 'none' | 'mixed';
  /** Operation durations are drawn from [0, maxDuration] ticks. */
  readonly maxDuration: number;
  /** A client waits [0, maxThinkTime] ticks between operations. */
  readonly maxThinkTime: number;
  /** Relative weights of the operation kinds; default get 40, put 30, cas 15, delete 15. */
  readonly mix?: { readonly get: number; readonly put: number; readonly cas: number; readonly delete: number };
}

/** mulberry32: a small seeded PRNG with values in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Planned {
  readonly clientId: number;
  readonly kind: KvInput['op'];
  readonly key: string;
  readonly value: string;
  readonly conditional: boolean;
  readonly call: number;
  readonly return: number | undefined;
  /** When it takes effect; undefined: never (only for unknown outcomes). */
  readonly point: number | undefined;
}

export function randomKvHistory(options: RandomKvHistoryOptions): KvOperation[] {
  const random = seededRandom(options.seed);
  const int = (max: number): number => Math.floor(random() * (max + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  const mix = options.mix ?? { get: 40, put: 30, cas: 15, delete: 15 };
  const clientFree = new Array<number>(options.clients).fill(0);
  const planned: Planned[] = [];
  let freshValue = 0;
  for (let i = 0; i < options.operations; i++) {
    const clientId = int(options.clients - 1);
    const call = clientFree[clientId]! + int(options.maxThinkTime);
    const duration = int(options.maxDuration);
    const roll = random() * (mix.get + mix.put + mix.cas + mix.delete);
    const kind: KvInput['op'] =
      roll < mix.get ? 'get' : roll < mix.get + mix.put ? 'put' : roll < mix.get + mix.put + mix.cas ? 'cas' : 'delete';
    const key = `k${int(options.keys - 1)}`;
    const value = options.values === 0 ? `w${freshValue++}` : `v${int(options.values - 1)}`;
    const unknown = random() < options.unknownRate;
    // A timed-out operation may still take effect long after the client gave up on it.
    const point = unknown
      ? random() < 0.5
        ? undefined
        : call + random() * duration * 3
      : call + random() * duration;
    planned.push({
      clientId,
      kind,
      key,
      value,
      conditional: random() < 0.5,
      call,
      return: unknown ? undefined : call + duration,
      point,
    });
    clientFree[clientId] = call + duration;
  }

  // Run the operations that take effect in linearization-point order.
  const store = new Map<string, { value: string; version: number }>();
  let versionCounter = 0;
  const outputs = new Map<Planned, { input: KvInput; output: KvOutput }>();
  const reportVersion = (): boolean => options.versions === 'all' || (options.versions === 'mixed' && random() < 0.5);
  const withVersion = <T extends object>(output: T, version: number): T & { version?: number } =>
    reportVersion() ? { ...output, version } : output;
  const expectedFor = (current: number): number =>
    random() < 0.6 ? current : pick([0, current + 1, Math.max(0, current - 1), versionCounter, int(versionCounter + 2)]);

  const effective = planned.filter((p) => p.point !== undefined).sort((a, b) => a.point! - b.point!);
  const skipped = planned.filter((p) => p.point === undefined);
  for (const p of effective) {
    const current = store.get(p.key);
    const currentVersion = current?.version ?? 0;
    switch (p.kind) {
      case 'get':
        outputs.set(p, {
          input: { op: 'get', key: p.key },
          output: current === undefined ? { found: false } : withVersion({ found: true, value: current.value }, current.version),
        });
        break;
      case 'put':
        versionCounter += 1 + int(2);
        store.set(p.key, { value: p.value, version: versionCounter });
        outputs.set(p, { input: { op: 'put', key: p.key, value: p.value }, output: withVersion({}, versionCounter) });
        break;
      case 'cas': {
        const expectedVersion = expectedFor(currentVersion);
        const input: KvInput = { op: 'cas', key: p.key, expectedVersion, value: p.value };
        if (expectedVersion === currentVersion) {
          versionCounter += 1 + int(2);
          store.set(p.key, { value: p.value, version: versionCounter });
          outputs.set(p, { input, output: withVersion({ ok: true }, versionCounter) });
        } else {
          outputs.set(p, { input, output: withVersion({ ok: false }, currentVersion) });
        }
        break;
      }
      case 'delete': {
        const expectedVersion = p.conditional ? expectedFor(currentVersion) : undefined;
        const input: KvInput =
          expectedVersion === undefined ? { op: 'delete', key: p.key } : { op: 'delete', key: p.key, expectedVersion };
        if (expectedVersion === undefined || expectedVersion === currentVersion) {
          store.delete(p.key);
          outputs.set(p, { input, output: withVersion({ ok: true, deleted: current !== undefined }, currentVersion) });
        } else {
          outputs.set(p, { input, output: withVersion({ ok: false }, currentVersion) });
        }
        break;
      }
    }
  }
  // Operations that never took effect still need inputs.
  for (const p of skipped) {
    const input: KvInput =
      p.kind === 'get'
        ? { op: 'get', key: p.key }
        : p.kind === 'put'
          ? { op: 'put', key: p.key, value: p.value }
          : p.kind === 'cas'
            ? { op: 'cas', key: p.key, expectedVersion: int(versionCounter + 1), value: p.value }
            : p.conditional
              ? { op: 'delete', key: p.key, expectedVersion: int(versionCounter + 1) }
              : { op: 'delete', key: p.key };
    outputs.set(p, { input, output: {} });
  }

  return planned.map((p) => {
    const { input, output } = outputs.get(p)!;
    return {
      clientId: p.clientId,
      input,
      call: p.call,
      return: p.return,
      output: p.return === undefined ? undefined : output,
    };
  });
}
