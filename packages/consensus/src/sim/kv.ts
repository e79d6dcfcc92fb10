// The simulated replicated state machine: a map key → {value, version}, where a write's version is
// the log index of the entry that made it (so versions of a key strictly increase, as the KV model
// of @concord/lincheck expects). Writes (put / cas / delete) go through the log; gets are served
// from the local map once a ReadIndex round (or the leader lease) says it is current enough.
import type { KvGetOutput, KvInput, KvOutput } from '@concord/lincheck';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export type KvWrite = Exclude<KvInput, { op: 'get' }>;

/** A log entry's command: the write, and the client request it answers (to match results exactly). */
export interface KvCommand {
  client: string;
  request: number;
  write: KvWrite;
}

export function encodeCommand(command: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  const parsed = JSON.parse(decoder.decode(data)) as KvCommand;
  if (typeof parsed.client !== 'string' || typeof parsed.request !== 'number' || typeof parsed.write !== 'object') {
    throw new Error(`kv: malformed command ${decoder.decode(data)}`);
  }
  return parsed;
}

export interface KvRecord {
  value: string;
  version: number;
}

/** What a state machine snapshot holds: every key, sorted. */
export type KvSnapshotData = readonly (readonly [key: string, value: string, version: number])[];

export class KvStateMachine {
  private readonly data = new Map<string, KvRecord>();

  get(key: string): KvGetOutput {
    const record = this.data.get(key);
    return record === undefined ? { found: false } : { found: true, value: record.value, version: record.version };
  }

  /** Applies a committed write at log index `index`; returns what the client is told. */
  apply(write: KvWrite, index: number): KvOutput {
    const current = this.data.get(write.key);
    const currentVersion = current?.version ?? 0;
    switch (write.op) {
      case 'put':
        this.data.set(write.key, { value: write.value, version: index });
        return { version: index };
      case 'cas':
        if (currentVersion !== write.expectedVersion) return { ok: false, version: currentVersion };
        this.data.set(write.key, { value: write.value, version: index });
        return { ok: true, version: index };
      case 'delete':
        if (write.expectedVersion !== undefined && write.expectedVersion !== currentVersion) {
          return { ok: false, version: currentVersion };
        }
        this.data.delete(write.key);
        return { ok: true, deleted: current !== undefined, version: currentVersion };
    }
  }

  snapshot(): KvSnapshotData {
    return [...this.data.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, r]) => [k, r.value, r.version] as const);
  }

  restore(snapshot: KvSnapshotData): void {
    this.data.clear();
    for (const [key, value, version] of snapshot) this.data.set(key, { value, version });
  }
}
