// One-line renderings of entries, messages and Readies, used by the golden interaction scripts and
// by assertion messages. Stable by construction: changing them means regenerating the scripts.
import { decodeConfChange } from '../membership.js';
import type { Entry, Membership, Message, Ready, SnapshotMeta } from '../types.js';

const decoder = new TextDecoder();

export function text(data: Uint8Array): string {
  return decoder.decode(data);
}

export function describeMembership(m: Membership): string {
  const learners = m.learners.length > 0 ? ` learners=(${m.learners.join(' ')})` : '';
  return `voters=(${m.voters.join(' ')})${learners}`;
}

export function describeEntry(e: Entry): string {
  const at = `${e.term}/${e.index}`;
  switch (e.type) {
    case 'noop':
      return `${at} noop`;
    case 'conf_change': {
      const { change } = decodeConfChange(e.data);
      return `${at} conf:${change.kind} ${change.node}`;
    }
    case 'normal':
      return e.data.length === 0 ? `${at} (empty)` : `${at} ${text(e.data)}`;
  }
}

export function describeSnapshot(s: SnapshotMeta): string {
  return `${s.term}/${s.index} ${describeMembership(s.membership)}`;
}

export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  const ctx = m.context !== undefined && m.context.length > 0 ? ` ctx=${text(m.context)}` : '';
  const reject = m.reject ? ' reject' : '';
  switch (m.type) {
    case 'vote':
    case 'pre_vote':
      return `${head} last=${m.logTerm}/${m.index}${m.context !== undefined ? ' (transfer)' : ''}`;
    case 'vote_response':
    case 'pre_vote_response':
      return `${head}${reject}`;
    case 'append':
      return `${head} prev=${m.logTerm}/${m.index} commit=${m.commit} entries=[${m.entries.map(describeEntry).join(', ')}]`;
    case 'append_response':
      return m.reject ? `${head} index=${m.index} reject hint=${m.logTerm}/${m.rejectHint}` : `${head} index=${m.index}`;
    case 'heartbeat':
      return `${head} commit=${m.commit}${ctx}`;
    case 'heartbeat_response':
      return `${head}${ctx}`;
    case 'snapshot':
      return `${head} snap=${m.snapshot ? describeSnapshot(m.snapshot) : '(none)'}`;
    case 'snapshot_response':
      return `${head} index=${m.index}`;
    case 'timeout_now':
      return head;
    case 'read_index':
      return `${head}${ctx}`;
    case 'read_index_response':
      return `${head} index=${m.index}${ctx}`;
  }
}

/** The lines of a Ready, indented, in the order the driver performs them. */
export function describeReady(rd: Ready): string[] {
  const lines: string[] = [];
  if (rd.softState) lines.push(`role: ${rd.softState.role} leader=${rd.softState.leaderId || '-'}`);
  if (rd.hardState) lines.push(`hard-state: term=${rd.hardState.term} vote=${rd.hardState.vote || '-'} commit=${rd.hardState.commit}`);
  if (rd.snapshot) lines.push(`snapshot: ${describeSnapshot(rd.snapshot)}`);
  for (const e of rd.entries) lines.push(`persist: ${describeEntry(e)}`);
  for (const m of rd.messages) lines.push(`send: ${describeMessage(m)}`);
  for (const m of rd.messagesAfterPersist) lines.push(`send after persist: ${describeMessage(m)}`);
  for (const e of rd.committedEntries) lines.push(`apply: ${describeEntry(e)}`);
  for (const r of rd.readStates) lines.push(`read-state: index=${r.index} ctx=${text(r.context)}`);
  return lines;
}
