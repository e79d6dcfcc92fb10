// Golden interaction scripts in the style of etcd-io/raft's datadriven tests (testdata/*.txt).
//
// A script is a sequence of blocks:
//
//   # comments and blank lines are kept as they are
//   command arg arg key=value
//   ----
//   expected output (no blank lines)
//
// The expected output ends at the first blank line or the end of the file. runScript() replays the
// commands against a fresh Network and renders the script again with the actual outputs, so that a
// test compares the two texts and UPDATE_GOLDEN=1 can rewrite the file with the rendering.
//
// Commands (node ids are the numbers 1..n in order of creation):
//   add-nodes <n> [voters=1,2,3] [learners=4] [pre-vote=true] [check-quorum=true] [election=10]
//             [heartbeat=1] [max-entries=64] [max-bytes=N] [inflight=256] [read-only=safe|lease]
//             [seed=1]
//       Creates n nodes. The first call bootstraps them as voters (or as given); later calls create
//       joining nodes with an empty membership unless voters/learners are given.
//   campaign <id>                     the node campaigns (pre-vote first, when enabled)
//   tick <id>... [x<k>]               ticks each node k times (default 1), round-robin
//   elapse <k> [<id>...]              k rounds of: tick every (listed) node once, then stabilize;
//                                     prints only role/term/leader changes, as "t=<round> <status>"
//   propose <id> <cmd>...             proposes each command
//   propose-conf-change <id> <add_learner|promote|remove> <node>
//   read-index <id> <ctx>
//   transfer-leadership <id> <to>
//   process-ready <id>...             handles the nodes' Readies (persist, send, apply, advance)
//   deliver-msgs [<id>...] [drop=<id>,...]   delivers queued messages (to the given nodes)
//   stabilize [<id>...]               process-ready and deliver-msgs until nothing moves
//   partition <ids> | <ids> [| ...]   cuts every link between the groups;  heal  restores them
//   isolate <id>                      cuts the node off from all others
//   compact <id> <index>              state machine snapshot at index, then compaction
//   restart <id>                      crash and recover from what was persisted
//   report-unreachable <id> <peer>
//   status <id>...  |  raft-state  |  log <id>  |  applied <id>  |  queue
import { describeEntry, describeMembership, describeMessage, describeReady, describeSnapshot } from './format.js';
import { DEFAULT_SIM_OPTIONS, Network, type SimOptions } from './network.js';
import type { MembershipChange, NodeId, ProposeResult, RaftStatus } from '../types.js';

export interface ScriptBlock {
  /** Comment and blank lines before the command, verbatim. */
  leading: string[];
  command: string;
  expected: string[];
  /** 1-based line number of the command, for error messages. */
  line: number;
}

export interface ParsedScript {
  blocks: ScriptBlock[];
  /** Comment and blank lines after the last block. */
  trailing: string[];
}

export function parseScript(source: string): ParsedScript {
  const lines = source.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const blocks: ScriptBlock[] = [];
  let leading: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    if (line.trim() === '' || line.startsWith('#')) {
      leading.push(line);
      i++;
      continue;
    }
    if (lines[i + 1] !== '----') throw new Error(`script line ${i + 1}: command "${line}" must be followed by ----`);
    const expected: string[] = [];
    let j = i + 2;
    while (j < lines.length && (lines[j] ?? '').trim() !== '') expected.push(lines[j++] ?? '');
    blocks.push({ leading, command: line, expected, line: i + 1 });
    leading = [];
    i = j;
  }
  return { blocks, trailing: leading };
}

export function renderScript(script: ParsedScript, outputs: string[][]): string {
  const out: string[] = [];
  script.blocks.forEach((block, i) => {
    // A blank line separates blocks; keep the author's comments.
    out.push(...block.leading, block.command, '----', ...(outputs[i] ?? []));
    const next = script.blocks[i + 1];
    if (next === undefined || next.leading[0]?.trim() !== '') out.push('');
  });
  out.push(...script.trailing);
  while (out.at(-1) === '') out.pop();
  return out.join('\n') + '\n';
}

/** Replays a script; returns the outputs per block and the script rendered with them. */
export function runScript(source: string): { expected: string; actual: string } {
  const script = parseScript(source);
  const env = new InteractionEnv();
  const outputs = script.blocks.map((block) => {
    try {
      const lines = env.run(block.command);
      return lines.length === 0 ? ['ok'] : lines;
    } catch (error) {
      throw new Error(`script line ${block.line} "${block.command}": ${(error as Error).message}`, { cause: error });
    }
  });
  const expected = renderScript(script, script.blocks.map((b) => b.expected));
  return { expected, actual: renderScript(script, outputs) };
}

interface Args {
  positional: string[];
  options: Map<string, string>;
}

function parseArgs(tokens: string[]): Args {
  const positional: string[] = [];
  const options = new Map<string, string>();
  for (const token of tokens) {
    const eq = token.indexOf('=');
    if (eq > 0) options.set(token.slice(0, eq), token.slice(eq + 1));
    else positional.push(token);
  }
  return { positional, options };
}

function bool(value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new Error(`expected true or false, got ${value}`);
}

function int(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got ${value}`);
  return n;
}

function idList(value: string | undefined): NodeId[] | undefined {
  if (value === undefined) return undefined;
  return value === '' ? [] : value.split(',');
}

function describeResult(result: ProposeResult): string {
  switch (result.kind) {
    case 'accepted':
      return `accepted index=${result.index} term=${result.term}`;
    case 'not_leader':
      return `not_leader leader=${result.leaderId || '-'}`;
    case 'dropped':
      return `dropped: ${result.reason}`;
  }
}

function describeStatus(s: RaftStatus): string {
  return (
    `${s.id}: ${s.role} term=${s.term} vote=${s.vote || '-'} leader=${s.leaderId || '-'} ` +
    `commit=${s.commit} applied=${s.applied} log=${s.firstIndex}..${s.lastIndex} ${describeMembership(s.membership)}`
  );
}

export class InteractionEnv {
  private net: Network | undefined;

  private network(): Network {
    if (this.net === undefined) throw new Error('no nodes: start with add-nodes');
    return this.net;
  }

  private requireIds(ids: string[]): NodeId[] {
    const net = this.network();
    for (const id of ids) net.node(id);
    return ids;
  }

  run(command: string): string[] {
    const [name, ...tokens] = command.trim().split(/\s+/);
    const args = parseArgs(tokens);
    const p = args.positional;
    const one = (): NodeId => {
      const id = p[0];
      if (id === undefined) throw new Error(`${name} needs a node id`);
      this.requireIds([id]);
      return id;
    };
    switch (name) {
      case 'add-nodes':
        return this.addNodes(args);
      case 'campaign':
        this.network().core(one()).campaign();
        return [];
      case 'tick':
        return this.tick(p);
      case 'elapse':
        return this.elapse(int(p[0], NaN), this.requireIds(p.length > 1 ? p.slice(1) : this.network().ids()));
      case 'propose': {
        const id = one();
        if (p.length < 2) throw new Error('propose needs at least one command');
        return p.slice(1).map((cmd) => describeResult(this.network().propose(id, cmd)));
      }
      case 'propose-conf-change': {
        const id = one();
        const [, kind, node] = p;
        if ((kind !== 'add_learner' && kind !== 'promote' && kind !== 'remove') || node === undefined) {
          throw new Error('usage: propose-conf-change <id> <add_learner|promote|remove> <node>');
        }
        const change: MembershipChange = { kind, node };
        return [describeResult(this.network().core(id).proposeMembershipChange(change))];
      }
      case 'read-index': {
        const id = one();
        const ctx = p[1];
        if (ctx === undefined) throw new Error('usage: read-index <id> <ctx>');
        const r = this.network().core(id).readIndex(new TextEncoder().encode(ctx));
        return [r.kind === 'accepted' ? 'accepted' : `not_leader leader=${r.leaderId || '-'}`];
      }
      case 'transfer-leadership': {
        const id = one();
        const to = p[1];
        if (to === undefined) throw new Error('usage: transfer-leadership <id> <to>');
        const r = this.network().core(id).transferLeadership(to);
        if (r.kind === 'accepted') return ['accepted'];
        if (r.kind === 'rejected') return [`rejected: ${r.reason}`];
        return [`not_leader leader=${r.leaderId || '-'}`];
      }
      case 'process-ready':
        return this.processReady(this.requireIds(p.length > 0 ? p : this.network().ids()));
      case 'deliver-msgs':
        return this.deliverMsgs(p.length > 0 ? this.requireIds(p) : undefined, idList(args.options.get('drop')));
      case 'stabilize':
        return this.stabilize(this.requireIds(p.length > 0 ? p : this.network().ids()));
      case 'partition': {
        const groups: NodeId[][] = [[]];
        for (const token of p) {
          if (token === '|') groups.push([]);
          else groups.at(-1)?.push(token);
        }
        this.requireIds(groups.flat());
        this.network().partition(...groups);
        return [];
      }
      case 'isolate':
        this.network().isolate(one());
        return [];
      case 'heal':
        this.network().heal();
        return [];
      case 'compact': {
        const id = one();
        this.network().compact(id, int(p[1], NaN));
        return [describeStatus(this.network().core(id).status())];
      }
      case 'restart': {
        const id = one();
        this.network().restart(id);
        return [describeStatus(this.network().core(id).status())];
      }
      case 'report-unreachable': {
        const id = one();
        const peer = p[1];
        if (peer === undefined) throw new Error('usage: report-unreachable <id> <peer>');
        this.network().core(id).reportUnreachable(peer);
        return [];
      }
      case 'status':
        return this.requireIds(p.length > 0 ? p : this.network().ids()).flatMap((id) => this.status(id));
      case 'raft-state':
        return this.network()
          .ids()
          .map((id) => {
            const s = this.network().core(id).status();
            return `${id}: ${s.role} term=${s.term} leader=${s.leaderId || '-'} commit=${s.commit} last=${s.lastIndex}`;
          });
      case 'log':
        return this.log(one());
      case 'applied': {
        const id = one();
        const sm = this.network().node(id).stateMachine;
        return [`${id}: ${sm.length === 0 ? '(nothing)' : sm.map((c) => `${c.term}/${c.index} ${c.text}`).join(', ')}`];
      }
      case 'queue':
        return this.network().describeQueue();
      default:
        throw new Error(`unknown command ${String(name)}`);
    }
  }

  private addNodes(args: Args): string[] {
    const n = int(args.positional[0], NaN);
    if (!(n >= 1)) throw new Error('usage: add-nodes <n> [options]');
    const o = args.options;
    const readOnly = o.get('read-only');
    const options: SimOptions = {
      ...DEFAULT_SIM_OPTIONS,
      preVote: bool(o.get('pre-vote'), DEFAULT_SIM_OPTIONS.preVote),
      checkQuorum: bool(o.get('check-quorum'), DEFAULT_SIM_OPTIONS.checkQuorum),
      electionTicks: int(o.get('election'), DEFAULT_SIM_OPTIONS.electionTicks),
      heartbeatTicks: int(o.get('heartbeat'), DEFAULT_SIM_OPTIONS.heartbeatTicks),
      maxAppendEntries: int(o.get('max-entries'), DEFAULT_SIM_OPTIONS.maxAppendEntries),
      maxAppendBytes: int(o.get('max-bytes'), DEFAULT_SIM_OPTIONS.maxAppendBytes),
      maxInflightAppends: int(o.get('inflight'), DEFAULT_SIM_OPTIONS.maxInflightAppends),
      seed: int(o.get('seed'), DEFAULT_SIM_OPTIONS.seed),
    };
    if (readOnly !== undefined) {
      if (readOnly !== 'safe' && readOnly !== 'lease') throw new Error('read-only must be safe or lease');
      options.readOnlyMode = readOnly === 'lease' ? 'lease_based' : 'safe';
    }
    const first = this.net === undefined;
    this.net ??= new Network(options);
    const net = this.net;
    const start = net.ids().length + 1;
    const ids = Array.from({ length: n }, (_, i) => String(start + i));
    const voters = idList(o.get('voters')) ?? (first ? ids : []);
    const learners = idList(o.get('learners')) ?? [];
    for (const id of ids) net.addNode(id, { voters, learners }, options);
    return ids.map((id) => describeStatus(net.core(id).status()));
  }

  private tick(p: string[]): string[] {
    let times = 1;
    const ids: NodeId[] = [];
    for (const token of p) {
      if (/^x\d+$/.test(token)) times = Number(token.slice(1));
      else ids.push(token);
    }
    const net = this.network();
    const targets = this.requireIds(ids.length > 0 ? ids : net.ids());
    for (let i = 0; i < times; i++) for (const id of targets) net.tick(id);
    return [];
  }

  private elapse(rounds: number, ids: NodeId[]): string[] {
    if (!(rounds >= 1)) throw new Error('usage: elapse <rounds> [<id>...]');
    const net = this.network();
    const summary = (id: NodeId): string => {
      const s = net.core(id).status();
      return `${id}: ${s.role} term=${s.term} leader=${s.leaderId || '-'}`;
    };
    const last = new Map(net.ids().map((id) => [id, summary(id)]));
    const out: string[] = [];
    const note = (round: number): void => {
      for (const id of net.ids()) {
        const now = summary(id);
        if (last.get(id) !== now) out.push(`t=${round} ${now}`);
        last.set(id, now);
      }
    };
    for (let round = 1; round <= rounds; round++) {
      for (const id of ids) net.tick(id);
      net.stabilize(net.ids(), () => note(round));
      note(round);
    }
    return out;
  }

  private processReady(ids: NodeId[]): string[] {
    const out: string[] = [];
    for (const id of ids) {
      const rd = this.network().processReady(id);
      if (rd === undefined) continue;
      out.push(`> ${id} handling Ready`, ...describeReady(rd).map((l) => `  ${l}`));
    }
    return out;
  }

  private deliverMsgs(to: NodeId[] | undefined, drop: NodeId[] | undefined): string[] {
    const options: { to?: NodeId[]; drop?: NodeId[] } = {};
    if (to !== undefined) options.to = to;
    if (drop !== undefined) options.drop = drop;
    return this.network()
      .deliver(options)
      .map((d) => (d.dropped !== undefined ? `${describeMessage(d.message)} (${d.dropped})` : describeMessage(d.message)));
  }

  private stabilize(ids: NodeId[]): string[] {
    const out: string[] = [];
    this.network().stabilize(ids, (e) => {
      if (e.kind === 'ready') {
        out.push(`> ${e.id} handling Ready`, ...describeReady(e.ready).map((l) => `  ${l}`));
      } else {
        out.push(`> ${e.id} receiving messages`);
        for (const d of e.deliveries) {
          out.push(`  ${describeMessage(d.message)}${d.dropped !== undefined ? ` (${d.dropped})` : ''}`);
        }
      }
    });
    return out;
  }

  private status(id: NodeId): string[] {
    const s = this.network().core(id).status();
    const out = [describeStatus(s)];
    for (const [peer, pr] of Object.entries(s.progress ?? {})) {
      if (peer !== id) out.push(`  ${peer}: match=${pr.match} next=${pr.next} ${pr.state}`);
    }
    return out;
  }

  private log(id: NodeId): string[] {
    const storage = this.network().node(id).storage;
    const out: string[] = [];
    if (storage.snapshot) out.push(`snapshot ${describeSnapshot(storage.snapshot)}`);
    out.push(...storage.entries.map(describeEntry));
    if (out.length === 0) out.push('(empty)');
    return out;
  }
}

