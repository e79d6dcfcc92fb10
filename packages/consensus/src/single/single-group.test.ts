import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConsensusGroup, StateMachine } from '../types.js';
import { SingleGroup, type SingleGroupOptions } from './single-group.js';

/** Records every applied command; its snapshot is the whole record, as JSON. */
class RecordingMachine implements StateMachine<string> {
  entries: { index: number; text: string }[] = [];
  /** Indexes passed to apply() since construction or the last restore(), in call order. */
  appliedSinceRestore: number[] = [];
  restores = 0;

  apply(command: Uint8Array, index: number): string {
    const text = Buffer.from(command).toString('utf8');
    this.entries.push({ index, text });
    this.appliedSinceRestore.push(index);
    return `${index}:${text}`;
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify(this.entries));
  }
  restore(snapshot: Uint8Array): void {
    this.entries = JSON.parse(Buffer.from(snapshot).toString('utf8')) as { index: number; text: string }[];
    this.appliedSinceRestore = [];
    this.restores++;
  }
}

function command(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}

/** What RecordingMachine holds after commands cmd-1..cmd-n at indexes 1..n. */
function expectedEntries(n: number): { index: number; text: string }[] {
  return Array.from({ length: n }, (_, i) => ({ index: i + 1, text: `cmd-${i + 1}` }));
}

async function walSegments(dataDir: string): Promise<number[]> {
  const names = await readdir(join(dataDir, 'wal'));
  return names
    .filter((name) => /^\d{16}\.wal$/.test(name))
    .map((name) => Number(name.slice(0, 16)))
    .sort((a, b) => a - b);
}

/** Waits, a bounded number of times, for `condition`. */
async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('SingleGroup', () => {
  let dataDir: string;
  const open: SingleGroup<string>[] = [];

  async function startGroup(machine: RecordingMachine, options: Partial<SingleGroupOptions<string>> = {}): Promise<SingleGroup<string>> {
    const group = new SingleGroup<string>({ memberId: 'g1-0', address: '127.0.0.1:7100', dataDir, stateMachine: machine, ...options });
    await group.start();
    open.push(group);
    return group;
  }

  async function proposeInOrder(group: SingleGroup<string>, from: number, to: number): Promise<void> {
    for (let i = from; i <= to; i++) {
      const outcome = await group.propose(command(`cmd-${i}`));
      assert.deepEqual(outcome, { kind: 'applied', index: i, result: `${i}:cmd-${i}` });
    }
  }

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'concord-single-group-'));
  });

  afterEach(async () => {
    for (const group of open.splice(0)) await group.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('recovers every acknowledged entry after a clean reopen and continues the index sequence', async () => {
    const first = await startGroup(new RecordingMachine());
    await proposeInOrder(first, 1, 20);
    await first.stop();

    const machine = new RecordingMachine();
    const reopened = await startGroup(machine);
    assert.deepEqual(machine.entries, expectedEntries(20));
    assert.equal(machine.restores, 0);
    assert.equal(reopened.status().appliedIndex, 20);
    assert.equal(reopened.status().commitIndex, 20);
    await proposeInOrder(reopened, 21, 21);
  });

  it('recovers acknowledged entries without a clean stop, as after kill -9', async () => {
    const crashed = await startGroup(new RecordingMachine(), { sync: true });
    await proposeInOrder(crashed, 1, 10);
    // No stop(): a second replica process opens the same folder while the first is frozen.
    const machine = new RecordingMachine();
    await startGroup(machine);
    assert.deepEqual(machine.entries, expectedEntries(10));
  });

  it('snapshots every snapshotEvery entries, drops covered log segments and recovers from snapshot plus tail', async () => {
    // Tiny segments: about three entries each, so compaction has whole segments to delete.
    const options = { snapshotEvery: 10, segmentBytes: 100 };
    const group = await startGroup(new RecordingMachine(), options);
    await proposeInOrder(group, 1, 35);
    await eventually(() => group.status().snapshotIndex >= 30, 'the snapshot at 30');
    assert.ok((await stat(join(dataDir, 'snapshot.bin'))).size > 0);
    await eventually(() => group.status().snapshotIndex === 30, 'no snapshot beyond 30');
    const segments = await walSegments(dataDir);
    assert.ok(segments[0]! > 0, `segments before the snapshot are deleted (left: ${segments.join(',')})`);
    assert.ok(segments.length <= 4, `only segments holding entries 30..35 remain (left: ${segments.join(',')})`);
    await group.stop();

    const machine = new RecordingMachine();
    const reopened = await startGroup(machine, options);
    assert.equal(machine.restores, 1);
    assert.deepEqual(machine.appliedSinceRestore, [31, 32, 33, 34, 35]);
    assert.deepEqual(machine.entries, expectedEntries(35));
    assert.equal(reopened.status().snapshotIndex, 30);
    assert.equal(reopened.status().appliedIndex, 35);
    await proposeInOrder(reopened, 36, 36);
  });

  it('recovers from an explicit snapshot with an empty tail', async () => {
    const group = await startGroup(new RecordingMachine());
    await proposeInOrder(group, 1, 12);
    await group.snapshotNow();
    assert.equal(group.status().snapshotIndex, 12);
    await group.snapshotNow(); // nothing new: a no-op
    await group.stop();

    const machine = new RecordingMachine();
    await startGroup(machine);
    assert.equal(machine.restores, 1);
    assert.deepEqual(machine.appliedSinceRestore, []);
    assert.deepEqual(machine.entries, expectedEntries(12));
  });

  it('applies concurrent proposals in index order and returns each proposer its own result', async () => {
    const machine = new RecordingMachine();
    const group = await startGroup(machine, { sync: true });
    const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => group.propose(command(`cmd-${i + 1}`))));
    outcomes.forEach((outcome, i) => {
      assert.deepEqual(outcome, { kind: 'applied', index: i + 1, result: `${i + 1}:cmd-${i + 1}` });
    });
    assert.deepEqual(machine.appliedSinceRestore, Array.from({ length: 200 }, (_, i) => i + 1));
    assert.deepEqual(machine.entries, expectedEntries(200));
  });

  it('answers a read barrier with the applied index and reports itself as the only member and leader', async () => {
    const group = await startGroup(new RecordingMachine());
    await proposeInOrder(group, 1, 3);
    assert.deepEqual(await group.readBarrier(), { kind: 'ready', index: 3 });
    const status = group.status();
    assert.equal(status.role, 'leader');
    assert.equal(status.leaderAddress, '127.0.0.1:7100');
    assert.deepEqual(status.members, [{ memberId: 'g1-0', address: '127.0.0.1:7100', voter: true }]);
    const asInterface: ConsensusGroup<string> = group;
    const change = await asInterface.changeMembership({ kind: 'add_learner', memberId: 'g1-1', address: '127.0.0.1:7101' });
    assert.equal(change.kind, 'rejected');
  });

  it('drops proposals made after stop', async () => {
    const group = await startGroup(new RecordingMachine());
    await group.stop();
    const outcome = await group.propose(command('late'));
    assert.equal(outcome.kind, 'dropped');
  });
  it('serializes snapshots: overlapping requests (explicit and automatic) all succeed and writes continue', async () => {
    const machine = new RecordingMachine();
    const group = await startGroup(machine, { snapshotEvery: 5 });
    await proposeInOrder(group, 1, 5); // the 5th proposal starts an automatic snapshot
    await Promise.all([group.snapshotNow(), group.snapshotNow(), group.snapshotNow()]);
    await proposeInOrder(group, 6, 12);
    await group.snapshotNow();
    assert.equal(group.status().snapshotIndex, 12);
    await group.stop();
    const reopened = new RecordingMachine();
    await startGroup(reopened);
    assert.deepEqual(reopened.entries, expectedEntries(12));
    assert.equal(reopened.restores, 1);
  });
});
