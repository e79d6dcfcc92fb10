// Cluster membership, changed one server at a time (Raft thesis §4.1).
//
// When a change takes effect: as soon as its entry is APPENDED to a server's log, committed or not
// (thesis §4.1, "a server always uses the latest configuration in its log"). This core does not use
// etcd's apply-time switch. Why:
//   - Every server derives its configuration from its own log alone, so the safety argument is the
//     thesis' directly: two consecutive one-server configurations always share a majority, and the
//     leader appends a change only when (a) the previous change is committed — so at most two
//     configurations are ever in use — and (b) an entry of its own term is committed, which closes
//     the hole Ongaro described in 2015 (a leader of an older configuration replacing an
//     uncommitted change of a newer one).
//   - A follower that truncates a conflicting suffix (§5.3) falls back to the configuration of the
//     last change that survives; ConfigHistory below keeps one configuration per change for that.
//   - The membership the core reports is exactly the one it uses for votes and commits.
//
// Encoding of a conf_change entry's data: UTF-8 JSON
//   {"change":{"kind":"add_learner","node":"4"},"membership":{"voters":["1","2","3"],"learners":["4"]}}
// The resulting membership travels with the change so that a server that joins with an empty log
// (and an empty initial membership) learns the full configuration from the first change it
// receives, without replaying the history that precedes it.
import type { Membership, MembershipChange, NodeId, SnapshotMeta, Entry } from './types.js';

export interface ConfChangeRecord {
  change: MembershipChange;
  /** The membership once the change is in effect. */
  membership: Membership;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function cloneMembership(m: Membership): Membership {
  return { voters: [...m.voters], learners: [...m.learners] };
}

export function isVoter(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id);
}

export function isMember(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id) || m.learners.includes(id);
}

/** Throws when a membership is malformed (a node twice, or both voter and learner). */
export function checkMembership(m: Membership, what: string): void {
  const seen = new Set<NodeId>();
  for (const id of [...m.voters, ...m.learners]) {
    if (typeof id !== 'string' || id === '') throw new Error(`raft membership: ${what} has an empty node id`);
    if (seen.has(id)) throw new Error(`raft membership: ${what} lists node ${id} twice`);
    seen.add(id);
  }
}

/** Why `change` cannot be applied to `m`, or undefined when it can. */
export function membershipChangeProblem(m: Membership, change: MembershipChange): string | undefined {
  const { node } = change;
  if (typeof node !== 'string' || node === '') return 'a membership change must name a node';
  switch (change.kind) {
    case 'add_learner':
      return isMember(m, node) ? `${node} is already a member` : undefined;
    case 'promote':
      return m.learners.includes(node) ? undefined : `${node} is not a learner`;
    case 'remove':
      if (!isMember(m, node)) return `${node} is not a member`;
      if (m.voters.length === 1 && m.voters[0] === node) return `${node} is the last voter`;
      return undefined;
  }
}

export function applyMembershipChange(m: Membership, change: MembershipChange): Membership {
  const problem = membershipChangeProblem(m, change);
  if (problem !== undefined) throw new Error(`raft membership: cannot ${change.kind} ${change.node}: ${problem}`);
  const { node } = change;
  switch (change.kind) {
    case 'add_learner':
      return { voters: [...m.voters], learners: [...m.learners, node] };
    case 'promote':
      return { voters: [...m.voters, node], learners: m.learners.filter((id) => id !== node) };
    case 'remove':
      return { voters: m.voters.filter((id) => id !== node), learners: m.learners.filter((id) => id !== node) };
  }
}

export function encodeConfChange(record: ConfChangeRecord): Uint8Array {
  const { change, membership } = record;
  return encoder.encode(
    JSON.stringify({
      change: { kind: change.kind, node: change.node },
      membership: { voters: membership.voters, learners: membership.learners },
    }),
  );
}

/** Decodes a conf_change entry. A malformed one in a replicated log is a broken invariant: it throws. */
export function decodeConfChange(data: Uint8Array): ConfChangeRecord {
  const value: unknown = JSON.parse(decoder.decode(data));
  const record = value as { change?: { kind?: unknown; node?: unknown }; membership?: { voters?: unknown; learners?: unknown } };
  const kind = record.change?.kind;
  const node = record.change?.node;
  const voters = record.membership?.voters;
  const learners = record.membership?.learners;
  if (
    (kind !== 'add_learner' && kind !== 'promote' && kind !== 'remove') ||
    typeof node !== 'string' ||
    !isStringArray(voters) ||
    !isStringArray(learners)
  ) {
    throw new Error('raft membership: malformed conf_change entry');
  }
  const membership = { voters, learners };
  checkMembership(membership, 'conf_change entry');
  return { change: { kind, node }, membership };
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/**
 * The configurations in effect along the log: the base one (from the snapshot, or the bootstrap
 * membership at index 0) and one per conf_change entry after it. The current configuration is the
 * last; truncating the log drops the configurations of the removed entries.
 */
export class ConfigHistory {
  private items: { index: number; membership: Membership }[];

  private constructor(base: { index: number; membership: Membership }) {
    this.items = [base];
  }

  static restore(snapshot: SnapshotMeta | undefined, initial: Membership, entries: readonly Entry[]): ConfigHistory {
    const base = snapshot ?? { index: 0, membership: initial };
    checkMembership(base.membership, snapshot ? 'snapshot membership' : 'initial membership');
    const history = new ConfigHistory({ index: base.index, membership: cloneMembership(base.membership) });
    for (const entry of entries) history.observe(entry);
    return history;
  }

  current(): Membership {
    const last = this.items.at(-1);
    if (last === undefined) throw new Error('raft membership: empty configuration history');
    return last.membership;
  }

  /** Index of the entry that introduced the current configuration (the snapshot index or 0 for the base). */
  currentIndex(): number {
    return this.items.at(-1)?.index ?? 0;
  }

  /** The configuration in effect at `index`. */
  at(index: number): Membership {
    let found = this.items[0];
    for (const item of this.items) {
      if (item.index <= index) found = item;
      else break;
    }
    if (found === undefined) throw new Error('raft membership: empty configuration history');
    return found.membership;
  }

  /** Notes an entry appended to the log; returns true when it changed the configuration. */
  observe(entry: Entry): boolean {
    if (entry.type !== 'conf_change') return false;
    this.items.push({ index: entry.index, membership: decodeConfChange(entry.data).membership });
    return true;
  }

  /** Entries from `index` on were deleted from the log: forget the configurations they introduced. */
  truncateFrom(index: number): void {
    const base = this.items[0];
    if (base !== undefined && index <= base.index) {
      throw new Error(`raft membership: cannot truncate at ${index}, the configuration base is at ${base.index}`);
    }
    this.items = this.items.filter((item) => item.index < index);
  }

  /** The log was compacted up to `index`: the configuration at `index` becomes the base. */
  compactTo(index: number): void {
    const keepFrom = this.items.findLastIndex((item) => item.index <= index);
    if (keepFrom > 0) this.items = this.items.slice(keepFrom);
  }

  /** A snapshot from the leader replaced the whole log. */
  reset(index: number, membership: Membership): void {
    checkMembership(membership, 'snapshot membership');
    this.items = [{ index, membership: cloneMembership(membership) }];
  }
}
