// The raft log on its own: term lookups, the §5.3 append rules, fast backtracking, the
// stable/unstable split, snapshots and compaction.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftLog } from './log.js';
import { committedIndex, voteResult } from './quorum.js';
import { entriesWithTerms } from './testing/helpers.js';

const membership = { voters: ['1'], learners: [] };

describe('RaftLog', () => {
  it('findConflictByTerm returns the last index ≤ index whose term ≤ term', () => {
    // Terms by index: 1:1 2:1 3:2 4:2 5:5 6:5 (snapshot at 0)
    const log = new RaftLog(undefined, entriesWithTerms([1, 1, 2, 2, 5, 5]), 0, 0);
    const cases: [number, number, number, number][] = [
      // index, term → index, term
      [6, 5, 6, 5],
      [6, 4, 4, 2],
      [6, 2, 4, 2],
      [6, 1, 2, 1],
      [6, 0, 0, 0],
      [3, 1, 2, 1],
      [9, 5, 6, 5], // beyond the end: start from the last index
    ];
    for (const [index, term, wantIndex, wantTerm] of cases) {
      assert.deepEqual(log.findConflictByTerm(index, term), { index: wantIndex, term: wantTerm }, `${term}/${index}`);
    }
  });

  it('findConflictByTerm stops at the snapshot boundary', () => {
    const log = new RaftLog({ index: 4, term: 3, membership }, entriesWithTerms([4, 4], 5), 4, 4);
    assert.deepEqual(log.findConflictByTerm(6, 3), { index: 4, term: 3 });
    assert.deepEqual(log.findConflictByTerm(6, 2), { index: 3, term: 0 });
  });

  it('maybeAppend follows §5.3: match prev, truncate at the first conflict, commit min(leaderCommit, last new)', () => {
    const base = () => new RaftLog(undefined, entriesWithTerms([1, 2, 3]), 1, 1);
    type Case = { prev: [number, number]; commit: number; terms: number[]; want?: number; last: number; committed: number; rewritten?: number };
    const cases: Case[] = [
      { prev: [3, 2], commit: 3, terms: [4], last: 3, committed: 1 }, // mismatch
      { prev: [4, 3], commit: 3, terms: [4], last: 3, committed: 1 }, // beyond end
      { prev: [3, 3], commit: 3, terms: [], want: 3, last: 3, committed: 3 },
      { prev: [3, 3], commit: 4, terms: [4], want: 4, last: 4, committed: 4, rewritten: 4 },
      { prev: [2, 2], commit: 9, terms: [3], want: 3, last: 3, committed: 3 }, // already have it
      { prev: [2, 2], commit: 9, terms: [3, 4], want: 4, last: 4, committed: 4, rewritten: 4 },
      { prev: [2, 2], commit: 2, terms: [4], want: 3, last: 3, committed: 2, rewritten: 3 }, // conflict at 3
      { prev: [1, 1], commit: 1, terms: [2], want: 2, last: 3, committed: 1 }, // stale: keeps 3
    ];
    for (const c of cases) {
      const log = base();
      const [prevIndex, prevTerm] = c.prev;
      const out = log.maybeAppend(prevIndex, prevTerm, c.commit, entriesWithTerms(c.terms, prevIndex + 1));
      const label = JSON.stringify(c);
      assert.equal(out?.lastNewIndex, c.want, label);
      assert.equal(out?.rewrittenFrom, c.rewritten, label);
      assert.equal(log.lastIndex(), c.last, label);
      assert.equal(log.committed, c.committed, label);
    }
  });

  it('maybeAppend refuses to rewrite a committed entry (a broken invariant)', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1, 1, 1]), 3, 3);
    assert.throws(() => log.maybeAppend(1, 1, 3, entriesWithTerms([2], 2)), /already committed/);
  });

  it('isUpToDate compares the last term first, then the index (§5.4.1)', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1, 2, 2]), 0, 0);
    assert.equal(log.isUpToDate(3, 1), true);
    assert.equal(log.isUpToDate(2, 3), true);
    assert.equal(log.isUpToDate(2, 2), false);
    assert.equal(log.isUpToDate(1, 100), false);
  });

  it('slice honours maxEntries and maxBytes but always returns at least one entry', () => {
    const entries = [10, 10, 10].map((size, i) => ({ term: 1, index: i + 1, type: 'normal' as const, data: new Uint8Array(size) }));
    const log = new RaftLog(undefined, entries, 0, 0);
    assert.equal(log.slice(1, 4, 2).length, 2);
    assert.equal(log.slice(1, 4, Infinity, 25).length, 2);
    assert.equal(log.slice(1, 4, Infinity, 5).length, 1);
  });

  it('unstable entries become stable on stableTo, unless they were rewritten meanwhile', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1]), 0, 0);
    log.append(entriesWithTerms([1, 1], 2));
    assert.deepEqual(
      log.unstableEntries().map((e) => e.index),
      [2, 3],
    );
    // A leader of term 2 rewrites index 3 before the driver reports 1/3 durable.
    log.maybeAppend(2, 1, 0, entriesWithTerms([2], 3));
    log.stableTo({ index: 3, term: 1 });
    assert.deepEqual(
      log.unstableEntries().map((e) => [e.index, e.term]),
      [
        [2, 1],
        [3, 2],
      ],
    );
    log.stableTo({ index: 3, term: 2 });
    assert.deepEqual(log.unstableEntries(), []);
  });

  it('a truncation below the stable index makes the rewritten suffix unstable again', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1, 1, 1]), 0, 0);
    assert.deepEqual(log.unstableEntries(), []);
    log.maybeAppend(1, 1, 0, entriesWithTerms([2], 2));
    assert.deepEqual(
      log.unstableEntries().map((e) => [e.index, e.term]),
      [[2, 2]],
    );
    assert.equal(log.persistedIndex(), 1);
  });

  it('restore replaces the log with a pending snapshot; nothing is applied until it is durable', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1, 1]), 1, 1);
    log.restore({ index: 10, term: 3, membership });
    assert.equal(log.firstIndex(), 11);
    assert.equal(log.lastIndex(), 10);
    assert.equal(log.committed, 10);
    assert.equal(log.persistedIndex(), 0);
    assert.deepEqual(log.nextCommittedEntries(), []);
    log.stableSnapshotTo(10);
    assert.equal(log.pendingSnapshot(), undefined);
    assert.equal(log.persistedIndex(), 10);
  });

  it('compact keeps the boundary term and refuses to drop what is not applied', () => {
    const log = new RaftLog(undefined, entriesWithTerms([1, 2, 2, 3]), 3, 3);
    assert.throws(() => log.compact({ index: 4, term: 3, membership }), /only 3 is applied/);
    log.compact({ index: 3, term: 2, membership });
    assert.equal(log.term(3), 2);
    assert.equal(log.term(2), undefined);
    assert.equal(log.firstIndex(), 4);
    assert.deepEqual(log.snapshotMeta(), { index: 3, term: 2, membership });
  });
});

describe('quorum arithmetic', () => {
  it('committedIndex is the highest index held by a majority', () => {
    const match: Record<string, number> = { a: 5, b: 3, c: 9, d: 1, e: 7 };
    assert.equal(committedIndex(['a', 'b', 'c', 'd', 'e'], (id) => match[id] ?? 0), 5);
    assert.equal(committedIndex(['a', 'b', 'c', 'd'], (id) => match[id] ?? 0), 3);
    assert.equal(committedIndex(['a'], (id) => match[id] ?? 0), 5);
    assert.equal(committedIndex([], () => 1), 0);
  });

  it('voteResult is won with a majority of grants and lost once a majority is out of reach', () => {
    const voters = ['1', '2', '3', '4', '5'];
    const votes = new Map<string, boolean>([
      ['1', true],
      ['2', false],
    ]);
    assert.equal(voteResult(voters, votes), 'pending');
    votes.set('3', false);
    assert.equal(voteResult(voters, votes), 'pending');
    votes.set('4', false);
    assert.equal(voteResult(voters, votes), 'lost');
    votes.set('9', true); // not a voter
    assert.equal(voteResult(voters, new Map([['1', true], ['2', true], ['9', true]])), 'pending');
  });
});
