// Helpers for unit tests that drive one RaftCore directly with step() and inspect its Readies.
import { RaftCore, type RaftCoreOptions } from '../core.js';
import { newMessage, type MessageFields } from '../messages.js';
import { mulberry32 } from './rng.js';
import type { Entry, EntryType, HardState, Message, MessageType, NodeId, RaftRestoredState, Ready, SnapshotMeta } from '../types.js';

export const encoder = new TextEncoder();

export interface CoreSetup extends Partial<Omit<RaftCoreOptions, 'id'>> {
  learners?: NodeId[];
  /** Stored log (from index after the snapshot), term, vote, commit, applied. */
  log?: Entry[];
  hardState?: Partial<HardState>;
  snapshot?: SnapshotMeta;
  applied?: number;
  seed?: number;
}

/** A core with id `id` in a cluster of `voters`, restored from the given stored state. */
export function newCore(id: NodeId, voters: NodeId[], setup: CoreSetup = {}): RaftCore {
  const { learners = [], log = [], hardState = {}, snapshot, applied, seed = 1, ...options } = setup;
  const lastTerm = log.at(-1)?.term ?? snapshot?.term ?? 0;
  const restored: RaftRestoredState = {
    hardState: { term: hardState.term ?? lastTerm, vote: hardState.vote ?? '', commit: hardState.commit ?? snapshot?.index ?? 0 },
    entries: log,
    initialMembership: { voters, learners },
    applied: applied ?? snapshot?.index ?? 0,
  };
  if (snapshot) restored.snapshot = snapshot;
  return new RaftCore(
    {
      electionTicks: 10,
      heartbeatTicks: 1,
      preVote: false,
      checkQuorum: false,
      maxAppendEntries: 64,
      maxAppendBytes: 1 << 20,
      maxInflightAppends: 256,
      random: mulberry32(seed),
      ...options,
      id,
    },
    restored,
  );
}

/** Entries at indexes from, from+1, ... with the given terms (normal entries named by index). */
export function entriesWithTerms(terms: number[], from = 1, type: EntryType = 'normal'): Entry[] {
  return terms.map((term, i) => ({ term, index: from + i, type, data: encoder.encode(`e${from + i}`) }));
}

export function msg(type: MessageType, from: NodeId, to: NodeId, term: number, fields: MessageFields = {}): Message {
  return newMessage(type, from, to, term, fields);
}

/** Takes the Ready (if any) and acknowledges it as a correct driver would. */
export function drain(core: RaftCore): Ready {
  if (!core.hasReady()) {
    return { entries: [], messages: [], messagesAfterPersist: [], committedEntries: [], readStates: [] };
  }
  const rd = core.ready();
  core.advance();
  return rd;
}

/** Every message of a Ready, both kinds, in order. */
export function sent(rd: Ready): Message[] {
  return [...rd.messages, ...rd.messagesAfterPersist];
}

/** Drains and returns the messages sent, optionally only those of `type`. */
export function drainMessages(core: RaftCore, type?: MessageType): Message[] {
  const all = sent(drain(core));
  return type === undefined ? all : all.filter((m) => m.type === type);
}

/** Makes `core` leader of a cluster where every peer grants its vote (answering with `term`+1). */
export function becomeLeader(core: RaftCore): void {
  core.campaign();
  const requests = drainMessages(core);
  for (const m of requests) {
    if (m.type === 'pre_vote') core.step(msg('pre_vote_response', m.to, core.id, m.term));
  }
  const votes = requests.some((m) => m.type === 'pre_vote') ? drainMessages(core) : requests;
  for (const m of votes) {
    if (m.type === 'vote' && core.status().role !== 'leader') core.step(msg('vote_response', m.to, core.id, m.term));
  }
  if (core.status().role !== 'leader') throw new Error(`helpers: ${core.id} did not become leader`);
}

/** Ticks `core` n times. */
export function tickN(core: RaftCore, n: number): void {
  for (let i = 0; i < n; i++) core.tick();
}

export function textOf(e: Entry): string {
  return new TextDecoder().decode(e.data);
}
