// The handlers against a scripted consensus group: how each ProposeOutcome and ReadBarrierOutcome
// becomes a gRPC status, which a real single-replica group never produces. The end-to-end behaviour
// over gRPC is in shard-node.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { MembershipChangeKind, ShardGetRequest, ShardPutRequest, ShardScanRequest, type ShardCommandResult } from '@concord/proto/shard';
import type {
  ConsensusGroup,
  ConsensusStatus,
  MembershipOutcome,
  TransferOutcome,
  ProposeOutcome,
  ReadBarrierOutcome,
} from '@concord/consensus';
import { HashRing } from '@concord/ring';
import { ServiceError } from '@concord/runtime';
import { KvStateMachine } from './kv-state-machine.js';
import { ShardHandlers, membershipChangeOf, quoteKey } from './shard-service.js';

/** A group that applies proposals to the state machine unless told to answer otherwise. */
class ScriptedGroup implements ConsensusGroup<ShardCommandResult> {
  readonly engine = 'single' as const;
  nextIndex = 1;
  proposeOverride: ProposeOutcome<ShardCommandResult> | undefined;
  /** When set, proposals wait for it before they apply (a commit that takes a while). */
  hold: Promise<void> | undefined;
  barrier: ReadBarrierOutcome = { kind: 'ready', index: 0 };
  barriers = 0;

  constructor(private readonly stateMachine: KvStateMachine) {}

  start(): Promise<void> {
    return Promise.resolve();
  }
  async propose(command: Uint8Array): Promise<ProposeOutcome<ShardCommandResult>> {
    if (this.proposeOverride !== undefined) return this.proposeOverride;
    await this.hold;
    const index = this.nextIndex++;
    return { kind: 'applied', index, result: this.stateMachine.apply(command, index) };
  }
  readBarrier(): Promise<ReadBarrierOutcome> {
    this.barriers++;
    return Promise.resolve(this.barrier);
  }
  changeMembership(): Promise<MembershipOutcome> {
    return Promise.resolve({ kind: 'rejected', reason: 'not scripted' });
  }
  transfer: TransferOutcome = { kind: 'rejected', reason: 'not scripted' };
  handOffLeadership(): Promise<TransferOutcome | undefined> {
    return Promise.resolve(undefined);
  }
  transferLeadership(): Promise<TransferOutcome> {
    return Promise.resolve(this.transfer);
  }
  snapshotNow(): Promise<void> {
    return Promise.resolve();
  }
  status(): ConsensusStatus {
    return {
      engine: 'single',
      memberId: 'g1-1',
      role: 'follower',
      term: 3,
      commitIndex: this.nextIndex - 1,
      appliedIndex: this.nextIndex - 1,
      snapshotIndex: 0,
      leaderId: 'g1-0',
      leaderAddress: '10.0.0.1:7100',
      members: [],
    };
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

const ring = new HashRing({ epoch: 1, vnodesPerGroup: 128, groups: ['g1', 'g2'] });

function keyOwnedBy(groupId: string, prefix: string): string {
  for (let i = 0; i < 10_000; i++) {
    const key = `${prefix}${i}`;
    if (ring.ownerOf(key) === groupId) return key;
  }
  throw new Error(`no key with prefix ${prefix} owned by ${groupId}`);
}

function setup(options: { scanBatchMaxKvs?: number; scanBatchMaxBytes?: number } = {}) {
  const stateMachine = new KvStateMachine();
  const group = new ScriptedGroup(stateMachine);
  const handlers = new ShardHandlers({ groupId: 'g1', memberId: 'g1-1', ring, stateMachine, ...options });
  handlers.attachGroup(group);
  return { stateMachine, group, handlers };
}

async function assertServiceError(
  promise: Promise<unknown>,
  code: status,
  message: RegExp,
  metadata: Record<string, string> = {},
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ServiceError, `expected a ServiceError, got ${String(error)}`);
    assert.equal(error.code, code, `code of "${error.message}"`);
    assert.match(error.message, message);
    assert.deepEqual(error.metadata, metadata);
    return true;
  });
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

describe('ShardHandlers outcomes', () => {
  const key = keyOwnedBy('g1', 'outcome/');
  const put = ShardPutRequest.fromPartial({ key, value: Buffer.from('v') });

  it('answers NOT_LEADER with the leader address when a write reaches a follower', async () => {
    const { group, handlers } = setup();
    group.proposeOverride = { kind: 'not_leader', leaderId: 'g1-0', leaderAddress: '10.0.0.1:7100' };
    await assertServiceError(handlers.put(put), status.UNAVAILABLE, /^NOT_LEADER: member g1-1 is not the leader of group g1; the leader is g1-0 at 10.0.0.1:7100$/, {
      'concord-reason': 'NOT_LEADER',
      'concord-leader': '10.0.0.1:7100',
    });
  });

  it('answers NOT_LEADER without concord-leader when no leader is known', async () => {
    const { group, handlers } = setup();
    group.proposeOverride = { kind: 'not_leader' };
    await assertServiceError(handlers.put(put), status.UNAVAILABLE, /leader is not known yet/, { 'concord-reason': 'NOT_LEADER' });
  });

  it('says whether a failed write may have happened', async () => {
    const { group, handlers } = setup();
    group.proposeOverride = { kind: 'dropped', reason: 'leader stepped down' };
    await assertServiceError(handlers.put(put), status.UNAVAILABLE, /dropped.*leader stepped down.*nothing was written/, {
      'concord-reason': 'PROPOSAL_DROPPED',
    });
    group.proposeOverride = { kind: 'unknown', reason: 'leadership lost after append' };
    await assertServiceError(handlers.delete({ ringEpoch: 0, key }), status.UNAVAILABLE, /may or may not have been applied/, {
      'concord-reason': 'OUTCOME_UNKNOWN',
    });
  });

  it('answers a leadership transfer with the new leader, or says why not with the code a caller acts on', async () => {
    const { group, handlers } = setup();
    group.transfer = { kind: 'transferred', leaderId: 'g1-2', term: 7 };
    assert.deepEqual(await handlers.transferLeadership({ memberId: 'g1-2' }), { leaderId: 'g1-2', term: 7 });
    group.transfer = { kind: 'not_leader', leaderId: 'g1-0', leaderAddress: '10.0.0.1:7100' };
    await assertServiceError(handlers.transferLeadership({ memberId: 'g1-2' }), status.UNAVAILABLE, /^NOT_LEADER: .* the leader is g1-0 at 10.0.0.1:7100$/, {
      'concord-reason': 'NOT_LEADER',
      'concord-leader': '10.0.0.1:7100',
    });
    group.transfer = { kind: 'rejected', reason: 'g1-9 is not a voter' };
    await assertServiceError(handlers.transferLeadership({ memberId: 'g1-9' }), status.FAILED_PRECONDITION, /^group g1 refused to hand its leadership to g1-9: g1-9 is not a voter$/);
    group.transfer = { kind: 'failed', reason: 'g1-2 did not take over within an election timeout (500 ms)' };
    await assertServiceError(handlers.transferLeadership({ memberId: 'g1-2' }), status.UNAVAILABLE, /did not hand its leadership to g1-2: g1-2 did not take over .*; check concord status, then retry$/);
    await assertServiceError(handlers.transferLeadership({ memberId: '' }), status.INVALID_ARGUMENT, /^member_id: must be 1 to 64/);
  });

  it('puts linearizable reads behind the read barrier and lets serializable reads skip it', async () => {
    const { group, handlers } = setup();
    await handlers.put(put);
    group.barrier = { kind: 'not_leader', leaderId: 'g1-0', leaderAddress: '10.0.0.1:7100' };
    const get = ShardGetRequest.fromPartial({ key });
    await assertServiceError(handlers.get(get), status.UNAVAILABLE, /^NOT_LEADER/, {
      'concord-reason': 'NOT_LEADER',
      'concord-leader': '10.0.0.1:7100',
    });
    await assertServiceError(collect(handlers.scan(ShardScanRequest.fromPartial({}))), status.UNAVAILABLE, /^NOT_LEADER/, {
      'concord-reason': 'NOT_LEADER',
      'concord-leader': '10.0.0.1:7100',
    });
    const stale = await handlers.get({ ...get, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE });
    assert.equal(stale.found, true);
    assert.equal(group.barriers, 2);
  });

  it('drains before a shutdown: calls in progress finish, new ones are refused as NOT_LEADER without a leader', async () => {
    const { group, handlers } = setup();
    let release: () => void = () => undefined;
    group.hold = new Promise((resolve) => (release = resolve));
    const inProgress = handlers.put(put);
    let drained = false;
    const draining = handlers.drain(60_000).then(() => (drained = true));
    await assertServiceError(handlers.put(put), status.UNAVAILABLE, /^NOT_LEADER: member g1-1 of group g1 is shutting down; nothing was done, retry on another replica$/, {
      'concord-reason': 'NOT_LEADER',
    });
    await assertServiceError(handlers.get(ShardGetRequest.fromPartial({ key })), status.UNAVAILABLE, /shutting down/, { 'concord-reason': 'NOT_LEADER' });
    await assertServiceError(collect(handlers.scan(ShardScanRequest.fromPartial({}))), status.UNAVAILABLE, /shutting down/, { 'concord-reason': 'NOT_LEADER' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(drained, false, 'the drain waits for the write in progress');
    release();
    assert.equal((await inProgress).version, 1);
    await draining;
    assert.equal(drained, true);
    assert.equal(handlers.status().appliedIndex, 1, 'only the write in progress was applied');
  });

  it('answers UNAVAILABLE until the group is attached', async () => {
    const handlers = new ShardHandlers({ groupId: 'g1', memberId: 'g1-1', ring, stateMachine: new KvStateMachine() });
    await assertServiceError(handlers.put(put), status.UNAVAILABLE, /still recovering/);
    assert.throws(() => handlers.status(), /still recovering/);
  });

  it('reports status from the group, the state machine and the ring', async () => {
    const { handlers } = setup();
    await handlers.put(put);
    assert.deepEqual(handlers.status(), {
      groupId: 'g1',
      memberId: 'g1-1',
      role: 'FOLLOWER',
      term: 3,
      commitIndex: 1,
      appliedIndex: 1,
      keyCount: 1,
      ringEpoch: 1,
      engine: 'single',
      leaderAddress: '10.0.0.1:7100',
    });
  });
});

describe('ShardHandlers scan batching', () => {
  async function filled(count: number, valueBytes: number, options: { scanBatchMaxKvs?: number; scanBatchMaxBytes?: number } = {}) {
    const context = setup(options);
    for (let i = 0; i < count; i++) {
      await context.handlers.put({ ringEpoch: 0, key: keyOwnedBy('g1', `scan/${String(i).padStart(3, '0')}/`), value: Buffer.alloc(valueBytes, 1) });
    }
    return context;
  }

  it('closes a batch at the key count or the byte budget, never leaving one empty', async () => {
    const { handlers } = await filled(10, 100, { scanBatchMaxKvs: 4, scanBatchMaxBytes: 350 });
    // Each entry is 100 value bytes plus a key of about 10 bytes: three fit in 350 bytes.
    const sizes = (await collect(handlers.scan(ShardScanRequest.fromPartial({ prefix: 'scan/' })))).map((batch) => batch.kvs.length);
    assert.deepEqual(sizes, [3, 3, 3, 1]);
    const single = await collect(handlers.scan(ShardScanRequest.fromPartial({ prefix: 'scan/', limit: 2 })));
    assert.deepEqual(single.map((batch) => batch.kvs.length), [2]);
    const oversized = await filled(3, 500, { scanBatchMaxBytes: 100 });
    const oneEach = await collect(oversized.handlers.scan(ShardScanRequest.fromPartial({})));
    assert.deepEqual(oneEach.map((batch) => batch.kvs.length), [1, 1, 1]);
  });

  it('stops when the call is cancelled', async () => {
    const { handlers } = await filled(10, 1, { scanBatchMaxKvs: 2 });
    let cancelled = false;
    const batches: number[] = [];
    for await (const batch of handlers.scan(ShardScanRequest.fromPartial({}), () => cancelled)) {
      batches.push(batch.kvs.length);
      cancelled = true;
    }
    assert.deepEqual(batches, [2]);
  });

  it('sends no message for an empty result', async () => {
    const { handlers } = setup();
    assert.deepEqual(await collect(handlers.scan(ShardScanRequest.fromPartial({ prefix: 'none/' }))), []);
  });
});

describe('quoteKey', () => {
  it('quotes short keys whole and cuts long ones at a code point boundary', () => {
    assert.equal(quoteKey('a"b'), '"a\\"b"');
    const long = 'x'.repeat(127) + '😀' + 'y'.repeat(100);
    assert.equal(quoteKey(long), `"${'x'.repeat(127)}"… (${Buffer.byteLength(long)} bytes)`);
  });
});

describe('membershipChangeOf', () => {
  const invalid = (request: Parameters<typeof membershipChangeOf>[0], pattern: RegExp) =>
    assert.throws(
      () => membershipChangeOf(request),
      (error: unknown) => error instanceof ServiceError && error.code === status.INVALID_ARGUMENT && pattern.test(error.message),
    );

  it('converts the three kinds', () => {
    assert.deepEqual(
      membershipChangeOf({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER, memberId: 'g1-3', address: '127.0.0.1:7110' }),
      { kind: 'add_learner', memberId: 'g1-3', address: '127.0.0.1:7110' },
    );
    assert.deepEqual(membershipChangeOf({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE, memberId: 'g1-3', address: '' }), { kind: 'promote', memberId: 'g1-3' });
    assert.deepEqual(membershipChangeOf({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE, memberId: 'g1-2', address: '' }), { kind: 'remove', memberId: 'g1-2' });
  });

  it('refuses missing or malformed fields with INVALID_ARGUMENT naming the field', () => {
    invalid({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_UNSPECIFIED, memberId: 'g1-3', address: '' }, /^kind: must be ADD_LEARNER, PROMOTE or REMOVE/);
    invalid({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE, memberId: '', address: '' }, /^member_id: must be 1 to 64/);
    invalid({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER, memberId: 'g1-3', address: '' }, /^address: ADD_LEARNER needs/);
    invalid({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER, memberId: 'g1-3', address: '127.0.0.1:0' }, /^address: ADD_LEARNER needs/);
    invalid({ kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE, memberId: 'g1-2', address: '127.0.0.1:7103' }, /^address: only ADD_LEARNER takes an address/);
  });
});
