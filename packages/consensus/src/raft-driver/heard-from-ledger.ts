// The members of a group this member has heard from: the evidence a peer that lost its data cannot
// hide. A member that took part in its group sent its peers messages (votes, acknowledgements,
// heartbeat answers), so they record its id here, in their own data dir, the first time they hear
// from it. When a member later comes back with an empty data dir and asks them (Consensus.Probe),
// their record says it had state once; a member of a brand-new group that merely starts late was
// never heard from, and may bootstrap. See bootstrap-guard.ts.
//
// FILE: `<data-dir>/raft/heard-from.bin`, written like a snapshot (packages/storage snapshot.ts:
// checksummed, temp file, fsync, rename), holding UTF-8 JSON {"format":1,"members":[ids, sorted]}.
// It is rewritten whole when a member is added or forgotten, which happens once per member of the
// group's life, not per message.

import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readSnapshot, writeSnapshotAtomic } from '@concord/storage';
import type { Logger } from '@concord/runtime';

export const HEARD_FROM_FILE = 'heard-from.bin';
const FORMAT = 1;

export class HeardFromLedger {
  private readonly members: Set<string>;
  /** The write in flight, if any; a change during it is written by one more write after it. */
  private writing: Promise<void> | undefined;
  private dirty = false;

  private constructor(
    private readonly path: string,
    members: Iterable<string>,
    private readonly logger: Logger,
  ) {
    this.members = new Set(members);
  }

  /**
   * Reads the ledger of the Raft data in `dataDir` (none yet: empty). A damaged file is reported and
   * replaced: the ledger only ever makes a start refuse, so starting it over errs towards the
   * behaviour without it, never towards losing data.
   */
  static async open(dataDir: string, logger: Logger): Promise<HeardFromLedger> {
    const path = join(dataDir, 'raft', HEARD_FROM_FILE);
    let members: string[] = [];
    try {
      const data = await readSnapshot(path);
      if (data !== undefined) members = decode(data);
    } catch (error) {
      logger.warn({ err: error, path }, 'the record of the members heard from is unreadable; starting it over');
    }
    return new HeardFromLedger(path, members, logger);
  }

  has(memberId: string): boolean {
    return this.members.has(memberId);
  }

  /** The recorded members, sorted. */
  list(): string[] {
    return [...this.members].sort();
  }

  /** Records `memberId`; persisted in the background (failures are logged). */
  add(memberId: string): void {
    if (this.members.has(memberId)) return;
    this.members.add(memberId);
    this.persist();
  }

  /** Forgets every member not in `current` (removed from the group: its id may come back as a new member). */
  retainOnly(current: ReadonlySet<string>): void {
    let changed = false;
    for (const memberId of this.members) {
      if (!current.has(memberId)) {
        this.members.delete(memberId);
        changed = true;
      }
    }
    if (changed) this.persist();
  }

  /** Resolves once every change made so far is on disk (or failed and was logged). */
  async flush(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  private persist(): void {
    if (this.writing !== undefined) {
      this.dirty = true;
      return;
    }
    this.writing = (async () => {
      do {
        this.dirty = false;
        const data = Buffer.from(JSON.stringify({ format: FORMAT, members: this.list() }), 'utf8');
        try {
          await mkdir(dirname(this.path), { recursive: true });
          await writeSnapshotAtomic(this.path, data);
        } catch (error) {
          this.logger.warn({ err: error, path: this.path }, 'could not record the members heard from');
        }
      } while (this.dirty);
      this.writing = undefined;
    })();
  }
}

function decode(data: Buffer): string[] {
  const parsed: unknown = JSON.parse(data.toString('utf8'));
  if (typeof parsed !== 'object' || parsed === null) throw new Error('not a JSON object');
  const { format, members } = parsed as { format?: unknown; members?: unknown };
  if (format !== FORMAT) throw new Error(`format ${String(format)}, this version reads ${FORMAT}`);
  if (!Array.isArray(members) || !members.every((id): id is string => typeof id === 'string')) throw new Error('members: not a list of ids');
  return members;
}
