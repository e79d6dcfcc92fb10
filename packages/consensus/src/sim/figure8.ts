// The Figure 8 nemesis (Raft paper §5.4.2). A leader must not commit an entry of an earlier term by
// counting its replicas: an entry can sit on a majority and still be overwritten, by a server whose
// last entry has a later term. The schedule builds exactly that history, in rounds:
//
//   1. depose   cut the current leader off, so that the others elect a new one, A (term a);
//   2. isolate  cut A off the moment it is elected: the entries of term a (its no-op, and writes
//               clients send it) stay on A alone;
//   3. diverge  the others elect B (term b > a); cut B off at once too, so that its entry of term b
//               stays on B (and on the few servers grouped with it);
//   4. re-elect join A with q−1 "swing" servers (q: a majority) that hold neither A's tail nor B's
//               entry; only A can win there (its last term, a, is the highest), in term t > b;
//   5. strike   A sends its tail of term a to the swing servers. The moment A's progress shows an
//               entry of term a above the commit point on a majority while its own entries of term t
//               are on less than a majority, cut A off together with every server holding a term-t
//               entry, and join B with exactly q−1 of the rest;
//   6. overwrite B, whose last term b beats a, is the only one there that can win; it overwrites
//               the term-a entries. A correct A never committed them; a core that counts replicas of
//               an earlier term committed and applied them at step 5, and the checkers see the
//               committed entry vanish (leader completeness when B leads, state-machine safety when
//               B's entry is applied at the same index).
//
// Step 5 needs a majority holding A's term-a entries without its term-t no-op. A leader appends its
// no-op on election, so a follower that lacks the tail receives the tail and the no-op in the same
// append unless the append is cut short by maxAppendEntries (or maxAppendBytes): figure-8 seeds draw
// small batches. With a batch of one entry, a round that gets to step 5 strikes.
import type { Message, NodeId } from '../raft/types.js';
import { emptyStats, leaders, quorum, type Nemesis, type NemesisStats, type NemesisWorld } from './nemesis.js';

/** How long, in election timeouts, a round waits for the cluster to reach its next state. */
const PHASE_TIMEOUTS = 30;

type Phase =
  | { kind: 'idle'; until: number }
  | { kind: 'new-leader'; aboveTerm: number; deadline: number }
  | { kind: 'diverge'; a: NodeId; aTerm: number; deadline: number }
  | { kind: 're-elect'; a: NodeId; b: NodeId; bTerm: number; swing: NodeId[]; oldLast: number; deadline: number }
  | {
      kind: 'watch';
      a: NodeId;
      b: NodeId;
      t: number;
      swing: NodeId[];
      /** The index of A's first entry of term t. */
      firstNew: number;
      /** The highest commit index anywhere when A was elected in term t. */
      baseline: number;
      deadline: number;
    }
  | { kind: 'overwrite'; group: NodeId[]; t: number; deadline: number }
  | { kind: 'settle'; until: number };

export class Figure8Nemesis implements Nemesis {
  readonly stats: NemesisStats = emptyStats();
  private phase: Phase = { kind: 'idle', until: 0 };

  step(world: NemesisWorld): void {
    const phase = this.phase;
    const now = world.now;
    if ('deadline' in phase && now >= phase.deadline) {
      this.abandon(world, `figure-8: gave up waiting (${phase.kind})`);
      return;
    }
    switch (phase.kind) {
      case 'idle':
        if (now >= phase.until) this.depose(world);
        return;
      case 'new-leader': {
        const a = leaders(world).find((l) => l.term > phase.aboveTerm);
        if (a === undefined) return;
        world.partitionGroups(
          [[a.id], world.voters.filter((id) => id !== a.id)],
          `figure-8: isolate ${a.id}, just elected in term ${a.term}: its entries of term ${a.term} stay on it`,
        );
        this.phase = { kind: 'diverge', a: a.id, aTerm: a.term, deadline: this.deadline(world) };
        return;
      }
      case 'diverge': {
        const b = leaders(world).find((l) => l.id !== phase.a && l.term > phase.aTerm);
        if (b === undefined) return;
        const others = world.rng.shuffle(world.voters.filter((id) => id !== phase.a && id !== b.id));
        const q = quorum(world.voters);
        const swing = others.slice(0, q - 1);
        const withB = others.slice(q - 1);
        world.partitionGroups(
          [
            [phase.a, ...swing],
            [b.id, ...withB],
          ],
          `figure-8: ${b.id} elected in term ${b.term}; its entry stays off the swing servers ${swing.join(',')}, which join ${phase.a}`,
        );
        this.phase = {
          kind: 're-elect',
          a: phase.a,
          b: b.id,
          bTerm: b.term,
          swing,
          oldLast: world.status(phase.a)?.lastIndex ?? 0,
          deadline: this.deadline(world),
        };
        return;
      }
      case 're-elect': {
        const a = world.status(phase.a);
        if (a === undefined) return;
        if (a.role === 'leader' && a.term > phase.bTerm) {
          this.phase = {
            kind: 'watch',
            a: phase.a,
            b: phase.b,
            t: a.term,
            swing: phase.swing,
            firstNew: phase.oldLast + 1,
            baseline: world.highestCommit(),
            deadline: this.deadline(world),
          };
          return;
        }
        // Until it leads a later term, A's log only grows with entries of its old term.
        phase.oldLast = a.lastIndex;
        return;
      }
      case 'watch':
        this.watch(world, phase);
        return;
      case 'overwrite': {
        const winner = leaders(world).find((l) => l.term > phase.t && phase.group.includes(l.id));
        if (winner === undefined) return;
        world.note(`figure-8: ${winner.id} leads term ${winner.term}, overwriting what the swing servers hold after the commit point`);
        this.phase = { kind: 'settle', until: now + 3 * this.timeout(world) };
        return;
      }
      case 'settle':
        if (now >= phase.until) this.rest(world, 'figure-8: round over');
        return;
    }
  }

  onSend(): void {}

  onDeliver(): void {}

  loses(_m: Message): boolean {
    return false;
  }

  private depose(world: NemesisWorld): void {
    this.stats.rounds++;
    const current = leaders(world)[0];
    if (current === undefined) {
      let term = 0;
      for (const id of world.voters) term = Math.max(term, world.status(id)?.term ?? 0);
      this.phase = { kind: 'new-leader', aboveTerm: term, deadline: this.deadline(world) };
      return;
    }
    world.partitionGroups(
      [[current.id], world.voters.filter((id) => id !== current.id)],
      `figure-8: depose ${current.id} (term ${current.term})`,
    );
    this.phase = { kind: 'new-leader', aboveTerm: current.term, deadline: this.deadline(world) };
  }

  private watch(world: NemesisWorld, phase: Extract<Phase, { kind: 'watch' }>): void {
    const a = world.status(phase.a);
    if (a === undefined || a.role !== 'leader' || a.term !== phase.t || a.progress === undefined) {
      this.abandon(world, `figure-8: ${phase.a} no longer leads term ${phase.t}`);
      return;
    }
    const progress = a.progress;
    const q = quorum(world.voters);
    const matches = world.voters.map((id) => progress[id]?.match ?? 0).sort((x, y) => y - x);
    const held = matches[q - 1] ?? 0;
    if (held >= phase.firstNew) {
      // The term-t no-op reached a majority first (a batch carried it with the tail): nothing to see.
      this.rest(world, `figure-8: ${phase.a}'s entry of term ${phase.t} reached a majority with the tail`);
      return;
    }
    if (held <= phase.baseline) return;
    // An entry of an earlier term is on a majority, A's term-t entries are not. Who holds one of
    // them (in memory, acknowledged or not) could not vote for B: cut them off with A.
    const holders = [phase.a, ...phase.swing.filter((id) => (world.status(id)?.lastIndex ?? 0) >= phase.firstNew)];
    const rest = world.voters.filter((id) => !holders.includes(id));
    if (!rest.includes(phase.b) || rest.length < q) {
      this.abandon(world, `figure-8: too many servers hold ${phase.a}'s entries of term ${phase.t}`);
      return;
    }
    const group = [phase.b, ...world.rng.shuffle(rest.filter((id) => id !== phase.b)).slice(0, q - 1)];
    const leftover = rest.filter((id) => !group.includes(id));
    this.stats.strikes++;
    world.partitionGroups(
      [holders, group, leftover],
      `figure-8: index ${held}, of a term before ${phase.t}, is on a majority, ${phase.a}'s term-${phase.t} entries ` +
        `only on ${holders.join(',')}: cut those off; {${group.join(',')}} must elect ${phase.b}`,
    );
    this.phase = { kind: 'overwrite', group, t: phase.t, deadline: this.deadline(world) };
  }

  private abandon(world: NemesisWorld, why: string): void {
    this.stats.abandoned++;
    this.rest(world, why);
  }

  private rest(world: NemesisWorld, why: string): void {
    world.heal(why);
    const e = this.timeout(world);
    this.phase = { kind: 'idle', until: world.now + world.rng.between(3 * e, 10 * e) };
  }

  private timeout(world: NemesisWorld): number {
    return world.electionTicks * world.stepsPerTick;
  }

  private deadline(world: NemesisWorld): number {
    return world.now + PHASE_TIMEOUTS * this.timeout(world);
  }
}
