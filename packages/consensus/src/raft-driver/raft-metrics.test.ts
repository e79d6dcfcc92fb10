// The concord_raft_* metrics and the proposal and election spans of RaftGroup, on a cluster of
// three members over gRPC in this process.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { trace, type Attributes, type AttributeValue, type Span, type SpanContext, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { Metrics } from '@concord/runtime';
import type { ProposeOutcome } from '../types.js';
import { TestCluster, eventually } from './testing.js';

/** A span that only records what was set on it. */
class RecordedSpan {
  readonly attributes: Attributes = {};
  readonly events: string[] = [];
  ended = false;
  constructor(readonly name: string, attributes: Attributes | undefined) {
    Object.assign(this.attributes, attributes);
  }
  spanContext(): SpanContext {
    return { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    Object.assign(this.attributes, attributes);
    return this;
  }
  addEvent(name: string): this {
    this.events.push(name);
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {
    this.ended = true;
  }
  isRecording(): boolean {
    return !this.ended;
  }
  recordException(): void {}
}

const spans: RecordedSpan[] = [];

const recordingTracer = {
  startSpan(name: string, options?: { attributes?: Attributes }): Span {
    const span = new RecordedSpan(name, options?.attributes);
    spans.push(span);
    return span as unknown as Span;
  },
  startActiveSpan(): never {
    throw new Error('not used by the raft driver');
  },
} as unknown as Tracer;

const provider: TracerProvider = { getTracer: () => recordingTracer };

interface Series {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

async function series(metrics: Metrics, name: string): Promise<Series[]> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name} is registered`);
  return (await metric.get()).values as Series[];
}

/** The value of the series of `name` whose labels include `labels` (undefined when there is none). */
async function valueOf(metrics: Metrics, name: string, labels: Record<string, string>, metricName = name): Promise<number | undefined> {
  const matching = (await series(metrics, name)).filter(
    (s) => (s.metricName ?? name) === metricName && Object.entries(labels).every(([label, value]) => s.labels[label] === value),
  );
  if (matching.length === 0) return undefined;
  return matching.reduce((sum, s) => sum + s.value, 0);
}

describe('RaftGroup metrics and spans', () => {
  const metrics = new Metrics();
  let cluster: TestCluster | undefined;

  before(() => {
    assert.ok(trace.setGlobalTracerProvider(provider), 'the test tracer provider is installed');
  });

  after(async () => {
    await cluster?.close();
  });

  it('exposes term, leadership, commit and applied index as the group reports them, and times every proposal', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c'], { metrics });
    const leader = await cluster.leader();
    const proposals = 12;
    const outcomes: ProposeOutcome<string>[] = [];
    for (let i = 0; i < 4; i++) outcomes.push(await leader.group.propose(Buffer.from(`k${i}=v${i}`)));
    outcomes.push(...(await Promise.all(Array.from({ length: proposals - 4 }, (_, i) => leader.group.propose(Buffer.from(`c${i}=x`))))));
    const applied = outcomes.filter((outcome) => outcome.kind === 'applied');
    const last = Math.max(...applied.map((outcome) => outcome.index));
    const members = cluster.running();
    await eventually('every member to apply every proposal', () =>
      members.every((member) => member.group.status().appliedIndex >= last && member.group.status().commitIndex >= last),
    );

    const leaders = new Set<string>();
    for (const member of members) {
      const labels = { group: 'g1', member: member.id };
      const status = member.group.status();
      assert.equal(await valueOf(metrics, 'concord_raft_term', labels), status.term, `term of ${member.id}`);
      assert.equal(await valueOf(metrics, 'concord_raft_commit_index', labels), status.commitIndex, `commit index of ${member.id}`);
      assert.equal(await valueOf(metrics, 'concord_raft_applied_index', labels), status.appliedIndex, `applied index of ${member.id}`);
      assert.equal(await valueOf(metrics, 'concord_raft_is_leader', labels), status.role === 'leader' ? 1 : 0, `is_leader of ${member.id}`);
      if (status.role === 'leader') leaders.add(member.id);
      // Every member has learned of at least the current leader.
      assert.ok((await valueOf(metrics, 'concord_raft_leader_changes_total', labels))! >= 1, `leader changes seen by ${member.id}`);
    }
    assert.deepEqual([...leaders], [leader.id]);

    // One observation per proposal, all on the member they were made on.
    const onLeader = { group: 'g1', member: leader.id };
    assert.equal(await valueOf(metrics, 'concord_raft_proposal_seconds', onLeader, 'concord_raft_proposal_seconds_count'), proposals);
    assert.equal(
      await valueOf(metrics, 'concord_raft_proposal_seconds', { ...onLeader, outcome: 'applied' }, 'concord_raft_proposal_seconds_count'),
      applied.length,
    );
    for (const member of members.filter((m) => m.id !== leader.id)) {
      assert.equal(await valueOf(metrics, 'concord_raft_proposal_seconds', { group: 'g1', member: member.id }, 'concord_raft_proposal_seconds_count'), undefined);
    }

    // Every member wrote entries to its WAL and timed the appends; the leader sent appends.
    for (const member of members) {
      const labels = { group: 'g1', member: member.id };
      assert.ok((await valueOf(metrics, 'concord_raft_fsync_seconds', labels, 'concord_raft_fsync_seconds_count'))! > 0);
      const persisted = await valueOf(metrics, 'concord_raft_append_batch_entries', { ...labels, kind: 'persist' }, 'concord_raft_append_batch_entries_sum');
      // The leader's own no-op and every proposal, at least (entries of earlier terms may come on top).
      assert.ok(persisted! >= proposals + 1, `entries persisted by ${member.id}: ${persisted}`);
    }
    const sent = await valueOf(metrics, 'concord_raft_append_batch_entries', { ...onLeader, kind: 'send' }, 'concord_raft_append_batch_entries_sum');
    assert.ok(sent! >= 2 * proposals, `entries the leader sent: ${sent}`);

    // The proposal spans: one per proposal, with the term and index the leader gave it.
    const proposeSpans = spans.filter((span) => span.name === 'consensus.propose');
    assert.equal(proposeSpans.length, proposals);
    for (const span of proposeSpans) {
      assert.ok(span.ended);
      assert.equal(span.attributes['concord.group_id'], 'g1');
      assert.equal(span.attributes['concord.member_id'], leader.id);
      assert.equal(span.attributes['concord.outcome'], 'applied');
      assert.equal(typeof span.attributes['concord.term'], 'number');
      assert.equal(typeof span.attributes['concord.index'], 'number');
    }
    assert.deepEqual(
      proposeSpans.map((span) => span.attributes['concord.index']).sort((x, y) => Number(x) - Number(y)),
      applied.map((outcome) => outcome.index).sort((x, y) => x - y),
    );

    // The election the leader won, with its votes; no span for heartbeats or messages.
    assert.deepEqual(new Set(spans.map((span) => span.name)), new Set(['consensus.propose', 'raft.election']));
    const won = spans.filter(
      (span) => span.name === 'raft.election' && span.attributes['concord.member_id'] === leader.id && span.attributes['concord.outcome'] === 'won',
    );
    const current = won.find((span) => span.attributes['concord.term'] === leader.group.status().term);
    assert.ok(current, `an election span won by ${leader.id} in term ${leader.group.status().term}`);
    assert.ok(current.ended);
    assert.equal(current.attributes['concord.voters'], 3);
    assert.ok(Number(current.attributes['concord.votes_granted']) >= 2);
    assert.ok(Number(current.attributes['concord.rounds']) >= 1);
    for (const span of spans.filter((s) => s.name === 'raft.election' && s.ended)) {
      assert.ok(['won', 'lost'].includes(String(span.attributes['concord.outcome'])), `outcome ${String(span.attributes['concord.outcome'])}`);
    }
  });

  it('counts snapshots and drops a stopped member gauges', async () => {
    assert.ok(cluster);
    const leader = await cluster.leader();
    await leader.group.snapshotNow();
    assert.equal(await valueOf(metrics, 'concord_raft_snapshots_total', { group: 'g1', member: leader.id, kind: 'taken' }), 1);

    const follower = cluster.running().find((member) => member.id !== leader.id)!;
    await cluster.stop(follower.id);
    const labels = { group: 'g1', member: follower.id };
    for (const name of ['concord_raft_term', 'concord_raft_is_leader', 'concord_raft_commit_index', 'concord_raft_applied_index']) {
      assert.equal(await valueOf(metrics, name, labels), undefined, `${name} of the stopped ${follower.id}`);
    }
    assert.ok((await valueOf(metrics, 'concord_raft_leader_changes_total', labels))! >= 1, 'counters stay');
    assert.equal(await valueOf(metrics, 'concord_raft_term', { group: 'g1', member: leader.id }), leader.group.status().term);
  });

  it('counts leadership transfers by trigger and outcome on the member asked to make them', async () => {
    assert.ok(cluster);
    const leader = await cluster.leader();
    const other = cluster.running().find((member) => member.id !== leader.id)!;
    assert.equal((await leader.group.transferLeadership('nobody')).kind, 'rejected');
    assert.equal((await leader.group.transferLeadership(other.id)).kind, 'transferred');
    const asked = { group: 'g1', member: leader.id, trigger: 'request' };
    assert.equal(await valueOf(metrics, 'concord_raft_leadership_transfers_total', { ...asked, outcome: 'rejected' }), 1);
    assert.equal(await valueOf(metrics, 'concord_raft_leadership_transfers_total', { ...asked, outcome: 'transferred' }), 1);
    // The new leader's graceful stop hands leadership back, once it has replicated to it (a
    // follower that has not acknowledged an append of this term is no candidate).
    assert.equal((await other.group.propose(Buffer.from('after-transfer=1'))).kind, 'applied');
    const handedOver = await other.group.handOffLeadership();
    assert.equal(handedOver?.kind, 'transferred', JSON.stringify(handedOver));
    assert.equal(await valueOf(metrics, 'concord_raft_leadership_transfers_total', { group: 'g1', member: other.id, trigger: 'stop', outcome: 'transferred' }), 1);
    assert.equal(leader.group.status().role, 'leader');
  });
});
