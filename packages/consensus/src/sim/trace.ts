// The run's trace: a running digest of every event (two seeds replay identically iff their digests
// match, which the tests assert), the last few events kept for a failure report, and, with
// --verbose, every event printed as it happens. Events are formatted only when someone reads them:
// a run records hundreds of thousands, and building strings for all of them would dominate its cost.
import { describeMessage } from '../raft/testing/format.js';
import type { Message } from '../raft/types.js';
import { hashString } from './rng.js';

export const DEFAULT_TRACE_TAIL = 50;

interface TraceEvent {
  tick: number;
  node: string;
  kind: string;
  message: Message | undefined;
  text: string | (() => string) | undefined;
}

const MESSAGE_TYPE_CODES: Record<Message['type'], number> = {
  pre_vote: 1,
  pre_vote_response: 2,
  vote: 3,
  vote_response: 4,
  append: 5,
  append_response: 6,
  heartbeat: 7,
  heartbeat_response: 8,
  snapshot: 9,
  snapshot_response: 10,
  timeout_now: 11,
  read_index: 12,
  read_index_response: 13,
};

export class Trace {
  private readonly ring: (TraceEvent | undefined)[];
  private next = 0;
  private count = 0;
  private h1 = 0x811c9dc5;
  private h2 = 0x3c6ef372;
  private readonly nameHashes = new Map<string, number>();

  constructor(
    capacity = DEFAULT_TRACE_TAIL,
    private readonly sink?: (line: string) => void,
  ) {
    this.ring = new Array<TraceEvent | undefined>(Math.max(1, capacity));
  }

  /** Records an event; `text` may be a function, called only if the event is ever printed. */
  event(tick: number, node: string, kind: string, text?: string | (() => string)): void {
    this.mixName(kind);
    this.mixName(node);
    this.mix(tick);
    if (typeof text === 'string') this.mixName(text);
    this.push({ tick, node, kind, message: undefined, text });
  }

  /** Records a message event (sent, delivered, dropped): its fields go into the digest. */
  message(tick: number, kind: string, m: Message, note?: string): void {
    this.mixName(kind);
    this.mix(tick);
    this.mixName(m.from);
    this.mixName(m.to);
    this.mix(MESSAGE_TYPE_CODES[m.type]);
    this.mix(m.term);
    this.mix(m.index);
    this.mix(m.logTerm);
    this.mix(m.commit);
    this.mix(m.entries.length);
    this.mix(m.reject ? 1 : 0);
    if (note !== undefined) this.mixName(note);
    this.push({ tick, node: m.to, kind, message: m, text: note });
  }

  /** Mixes a value into the digest without recording an event (e.g. a run's final statistics). */
  mixValue(value: number | string): void {
    if (typeof value === 'number') this.mix(value);
    else this.mixName(value);
  }

  /** 16 hex digits summarizing every event so far. */
  digest(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }

  get events(): number {
    return this.count;
  }

  /** The last events, oldest first, formatted. */
  tail(): string[] {
    const out: string[] = [];
    const size = this.ring.length;
    for (let i = 0; i < size; i++) {
      const e = this.ring[(this.next + i) % size];
      if (e !== undefined) out.push(format(e));
    }
    return out;
  }

  private push(e: TraceEvent): void {
    this.count++;
    this.ring[this.next] = e;
    this.next = (this.next + 1) % this.ring.length;
    if (this.sink !== undefined) this.sink(format(e));
  }

  private mix(value: number): void {
    const v = value | 0;
    this.h1 = Math.imul(this.h1 ^ v, 0x01000193);
    this.h2 = Math.imul((this.h2 << 5) | (this.h2 >>> 27), 0x9e3779b1) ^ (v + 0x7f4a7c15);
  }

  private mixName(name: string): void {
    let h = this.nameHashes.get(name);
    if (h === undefined) {
      h = hashString(name);
      if (this.nameHashes.size < 4096) this.nameHashes.set(name, h);
    }
    this.mix(h);
  }
}

function format(e: TraceEvent): string {
  const head = `t=${String(e.tick).padStart(5)} ${e.kind.padEnd(9)}`;
  const text = typeof e.text === 'function' ? e.text() : e.text;
  if (e.message !== undefined) return `${head} ${describeMessage(e.message)}${text !== undefined ? ` (${text})` : ''}`;
  return `${head} [${e.node}] ${text ?? ''}`.trimEnd();
}
