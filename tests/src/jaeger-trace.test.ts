// A request's trace, read back from a real Jaeger (CONVENTIONS.md §3: the opentelemetry-demo tests
// its telemetry by querying Jaeger after real traffic; so do we). Jaeger v2 runs with in-memory
// storage on free ports; a cluster of three coordinators (the meta group) and one shard group of
// three Raft replicas exports to it over OTLP; a traced SDK client process puts a key and reads it
// back through the meta leader under one root span. Defends:
//  - context crosses every gRPC hop: client → coordinator → shard, one trace for the request;
//  - the shard group's Raft proposal is part of that trace, below the shard's server span, and says
//    which group, term and log index the write took (the index is the put's version);
//  - Raft traffic between replicas (appends, heartbeats) makes no traces of its own.
//
// Needs .tools/bin/jaeger (`bash scripts/install-tools.sh jaeger`); fails, naming that command,
// without it. Timings are never asserted; the bounds below only keep a broken build from hanging.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { runCommand } from './harness/command.js';
import { sleep } from './harness/grpc.js';
import { describeTrace, isDescendant, parentOf, serviceOf, startJaeger, tagOf, type JaegerSpan, type JaegerTrace, type RunningJaeger } from './harness/jaeger.js';
import { nodeBinary } from './harness/paths.js';

const GROUP = 'g1';
const CLIENT_SERVICE = 'concord-test-client';
const COORDINATOR_SERVICE = 'concord-coordinator';
const SHARD_SERVICE = 'concord-shard';
const TRACED_CLIENT = 'tests/dist/harness/traced-client.js';
/** The traced client's root span (harness/traced-client.ts). */
const ROOT_SPAN = 'test-client put-and-get';
/** Liveness bounds: failure guards, not expected durations. */
const TRACE_WAIT_MS = 20_000;
const CLIENT_TIMEOUT_MS = 30_000;
const POLL_MS = 200;
/**
 * How long the cluster runs idle before the request, on top of its start: over a hundred more Raft
 * heartbeats (one per 50 ms tick from each leader to each follower, in the shard group and the meta
 * group), any of which would show up as a trace if heartbeats were traced.
 */
const IDLE_MS = 1_500;

function spansOf(trace: JaegerTrace, service: string, operation: string, kind?: 'server' | 'client' | 'internal'): JaegerSpan[] {
  return trace.spans.filter(
    (span) => serviceOf(trace, span) === service && span.operationName === operation && (kind === undefined || (tagOf(span, 'span.kind') ?? 'internal') === kind),
  );
}

function one(trace: JaegerTrace, service: string, operation: string, kind?: 'server' | 'client' | 'internal'): JaegerSpan {
  const found = spansOf(trace, service, operation, kind);
  assert.equal(found.length, 1, `expected exactly one ${kind ?? ''} span ${operation} of ${service}, found ${found.length}\n${describeTrace(trace)}`);
  return found[0]!;
}

function parentSpan(trace: JaegerTrace, span: JaegerSpan): JaegerSpan | undefined {
  const parent = parentOf(span);
  return parent === undefined ? undefined : trace.spans.find((each) => each.spanID === parent);
}

/** Whether every span the assertions need has arrived (the processes export independently). */
function complete(trace: JaegerTrace | undefined): trace is JaegerTrace {
  if (trace === undefined) return false;
  const has = (service: string, operation: string, kind?: 'server' | 'client' | 'internal'): boolean => spansOf(trace, service, operation, kind).length > 0;
  return (
    trace.spans.some((span) => serviceOf(trace, span) === CLIENT_SERVICE && parentOf(span) === undefined) &&
    has(COORDINATOR_SERVICE, 'grpc.concord.v1.KV/Put', 'server') &&
    has(COORDINATOR_SERVICE, 'grpc.concord.v1.Shard/Put', 'client') &&
    has(SHARD_SERVICE, 'grpc.concord.v1.Shard/Put', 'server') &&
    has(SHARD_SERVICE, 'shard.propose put') &&
    has(SHARD_SERVICE, 'consensus.propose') &&
    has(COORDINATOR_SERVICE, 'grpc.concord.v1.KV/Get', 'server') &&
    has(COORDINATOR_SERVICE, 'grpc.concord.v1.Shard/Get', 'client') &&
    has(SHARD_SERVICE, 'grpc.concord.v1.Shard/Get', 'server')
  );
}

async function waitForTrace(jaeger: RunningJaeger, traceId: string): Promise<JaegerTrace> {
  const deadline = Date.now() + TRACE_WAIT_MS;
  let last: JaegerTrace | undefined;
  for (;;) {
    last = await jaeger.trace(traceId);
    if (complete(last)) return last;
    if (Date.now() > deadline) {
      assert.fail(
        `trace ${traceId} is not complete in Jaeger after ${TRACE_WAIT_MS} ms: ` +
          (last === undefined ? 'Jaeger has no span of it' : `it holds\n${describeTrace(last)}`) +
          `\nservices Jaeger knows: ${(await jaeger.services()).join(', ')}`,
      );
    }
    await sleep(POLL_MS);
  }
}

test('a put and a get through the coordinator make one trace in Jaeger: client, coordinator, shard and its Raft proposal', { timeout: 150_000 }, async (t) => {
  const jaeger = await startJaeger();
  const since = Date.now();
  let cluster: LocalCluster | undefined;
  try {
    cluster = await startLocalCluster({ groups: [GROUP], env: jaeger.otelEnv() });
    const metaLeader = await cluster.metaLeader();
    await sleep(IDLE_MS);

    const key = `traced-${randomBytes(4).toString('hex')}`;
    const value = 'seen in Jaeger';
    const client = await runCommand(nodeBinary, ['--import', '@concord/runtime/register', TRACED_CLIENT, metaLeader.address, key, value], {
      env: { ...jaeger.otelEnv(), CONCORD_SERVICE_NAME: CLIENT_SERVICE },
      timeoutMs: CLIENT_TIMEOUT_MS,
    });
    assert.equal(client.code, 0, `the traced client failed (${client.code ?? client.signal}):\n${client.stderr}\n${client.stdout}`);
    const answer = JSON.parse(client.stdout.trim().split('\n').pop()!) as { traceId: string; version: number; value: string };
    assert.equal(answer.value, value);
    assert.match(answer.traceId, /^[0-9a-f]{32}$/);

    const trace = await waitForTrace(jaeger, answer.traceId);
    t.diagnostic(describeTrace(trace));
    const shown = `\n${describeTrace(trace)}`;

    // One trace for the request: the client's root span and nothing else of the client's.
    const clientTraces = await jaeger.traces({ service: CLIENT_SERVICE, sinceMs: since });
    assert.deepEqual(
      clientTraces.map((each) => each.traceID),
      [answer.traceId],
      `the client's put and get should make exactly one trace`,
    );
    const traceRoots = trace.spans.filter((span) => parentOf(span) === undefined);
    assert.equal(traceRoots.length, 1, `one root span${shown}`);
    assert.equal(serviceOf(trace, traceRoots[0]!), CLIENT_SERVICE, `the root is the client's span${shown}`);
    assert.equal(traceRoots[0]!.operationName, ROOT_SPAN);
    const services = new Set(trace.spans.map((span) => serviceOf(trace, span)));
    assert.deepEqual([...services].sort(), [COORDINATOR_SERVICE, SHARD_SERVICE, CLIENT_SERVICE].sort(), `services in the trace${shown}`);

    // SDK → the coordinator's KV server → its Shard client → the shard's server. The coordinator's
    // router may knock on a follower first (NOT_LEADER names the leader, and it goes there): each
    // attempt is a client span of its own, and exactly one succeeds.
    const succeeded = new Map<'Put' | 'Get', JaegerSpan>();
    for (const method of ['Put', 'Get'] as const) {
      const sdkCall = one(trace, CLIENT_SERVICE, `grpc.concord.v1.KV/${method}`, 'client');
      const coordinatorServers = spansOf(trace, COORDINATOR_SERVICE, `grpc.concord.v1.KV/${method}`, 'server');
      const entry = coordinatorServers.filter((span) => parentOf(span) === sdkCall.spanID);
      assert.equal(entry.length, 1, `the coordinator's KV/${method} is a child of the SDK's call${shown}`);
      // The SDK calls the meta leader, which serves the call itself; should leadership have moved
      // in between, the call is forwarded once and the new leader's KV/${method} serves it.
      const attempts = spansOf(trace, COORDINATOR_SERVICE, `grpc.concord.v1.Shard/${method}`, 'client');
      assert.ok(attempts.length > 0, `the coordinator called a shard for ${method}${shown}`);
      const serving = coordinatorServers.find((span) => span.spanID === parentOf(attempts[0]!));
      assert.ok(serving !== undefined && isDescendant(trace, serving, entry[0]!), `the coordinator's Shard/${method} call is a child of its KV/${method}${shown}`);
      for (const attempt of attempts) {
        assert.equal(parentOf(attempt), serving.spanID, `every Shard/${method} call of the coordinator is a child of the same KV/${method}${shown}`);
      }
      const ok = attempts.filter((attempt) => tagOf(attempt, 'rpc.grpc.status_code') === 0);
      assert.equal(ok.length, 1, `exactly one of the coordinator's Shard/${method} calls succeeded${shown}`);
      const shardServers = spansOf(trace, SHARD_SERVICE, `grpc.concord.v1.Shard/${method}`, 'server').filter((span) => isDescendant(trace, span, ok[0]!));
      assert.equal(shardServers.length, 1, `one shard served the successful Shard/${method} call, below it${shown}`);
      assert.equal(parentOf(shardServers[0]!), ok[0]!.spanID, `the shard's Shard/${method} is a child of the coordinator's call${shown}`);
      assert.equal(tagOf(shardServers[0]!, 'rpc.grpc.status_code'), 0);
      succeeded.set(method, shardServers[0]!);
    }

    // The write's Raft proposal, on the group's leader, below the shard's server span.
    const groupLeader = await cluster.leaderOf(GROUP);
    const shardPut = succeeded.get('Put')!;
    const childrenOf = (span: JaegerSpan, operation: string): JaegerSpan[] =>
      trace.spans.filter((each) => parentOf(each) === span.spanID && each.operationName === operation);
    const shardProposes = childrenOf(shardPut, 'shard.propose put');
    assert.equal(shardProposes.length, 1, `shard.propose put is a child of the shard's Shard/Put${shown}`);
    const shardPropose = shardProposes[0]!;
    assert.equal(tagOf(shardPropose, 'concord.group_id'), GROUP, `shard.propose put names the group${shown}`);
    assert.equal(tagOf(shardPropose, 'concord.propose.outcome'), 'applied', `shard.propose put says it applied${shown}`);
    assert.equal(tagOf(shardPropose, 'concord.index'), answer.version, `shard.propose put names the log index, which is the put's version${shown}`);
    const consensusProposes = childrenOf(shardPropose, 'consensus.propose');
    assert.equal(consensusProposes.length, 1, `consensus.propose is a child of shard.propose put${shown}`);
    const consensusPropose = consensusProposes[0]!;
    assert.equal(tagOf(consensusPropose, 'concord.group_id'), GROUP, `consensus.propose names the group${shown}`);
    assert.equal(tagOf(consensusPropose, 'concord.engine'), 'raft');
    assert.equal(tagOf(consensusPropose, 'concord.member_id'), groupLeader.status.memberId, `the group's leader proposed it${shown}`);
    assert.equal(tagOf(consensusPropose, 'concord.term'), groupLeader.status.term, `the proposal's term is the leader's${shown}`);
    assert.equal(tagOf(consensusPropose, 'concord.index'), answer.version, `the proposal's index is the put's version${shown}`);
    assert.equal(tagOf(consensusPropose, 'concord.outcome'), 'applied', `consensus.propose says it applied${shown}`);
    // The read proposes nothing (it passes a read barrier), and only the put's proposal applied.
    const applied = trace.spans.filter((span) => span.operationName === 'consensus.propose' && tagOf(span, 'concord.outcome') === 'applied');
    assert.deepEqual(applied, [consensusPropose], `one applied proposal in the trace${shown}`);
    assert.equal(childrenOf(succeeded.get('Get')!, 'consensus.propose').length + childrenOf(succeeded.get('Get')!, 'shard.propose put').length, 0);
    // The read's wait is its read barrier: on the leader, confirmed at an index no lower than the put's.
    const barriers = childrenOf(succeeded.get('Get')!, 'consensus.read_barrier');
    assert.equal(barriers.length, 1, `consensus.read_barrier is a child of the shard's Shard/Get${shown}`);
    assert.equal(tagOf(barriers[0]!, 'concord.group_id'), GROUP, `the read barrier names the group${shown}`);
    assert.equal(tagOf(barriers[0]!, 'concord.outcome'), 'ready', `the read barrier was passed${shown}`);
    const readIndex = Number(tagOf(barriers[0]!, 'concord.index'));
    assert.ok(readIndex >= answer.version, `the read index ${readIndex} covers the put at ${answer.version}${shown}`);

    // Raft between replicas traces nothing. Both Raft groups (the shard group and the meta group)
    // have exchanged heartbeats and appends since they started; had any of that been traced, it
    // would show up as spans of the Consensus service, or as traces of their own. So: no such span
    // anywhere, and every trace of a shard or a coordinator is the request's, or starts at a call
    // the harness made (Status, GetRing probes: the test process is not traced), an election, or
    // the meta group's own read barrier and proposal (the coordinators' bootstrap of the ring).
    const expectedRoots = new Set([
      `${COORDINATOR_SERVICE}: consensus.propose group meta`,
      `${COORDINATOR_SERVICE}: consensus.read_barrier group meta`,
      `${CLIENT_SERVICE}: ${ROOT_SPAN}`,
      `${SHARD_SERVICE}: grpc.concord.v1.Shard/Status`,
      `${COORDINATOR_SERVICE}: grpc.concord.v1.Cluster/Status`,
      `${COORDINATOR_SERVICE}: grpc.concord.v1.Cluster/GetRing`,
      `${SHARD_SERVICE}: raft.election`,
      `${COORDINATOR_SERVICE}: raft.election`,
    ]);
    const roots = new Map<string, number>();
    const seen = new Map<string, JaegerTrace>();
    for (const service of [SHARD_SERVICE, COORDINATOR_SERVICE]) {
      const traces = await jaeger.traces({ service, sinceMs: since });
      assert.ok(traces.some((each) => each.traceID === answer.traceId), `the request's trace is among the traces of ${service}`);
      for (const each of traces) seen.set(each.traceID, each);
    }
    for (const each of seen.values()) {
      const consensusSpans = each.spans.filter((span) => /concord\.v1\.Consensus\//.test(span.operationName));
      assert.equal(consensusSpans.length, 0, `a trace with Raft peer spans:\n${describeTrace(each)}`);
      const ids = new Set(each.spans.map((span) => span.spanID));
      for (const span of each.spans.filter((span) => parentOf(span) === undefined || !ids.has(parentOf(span)!))) {
        const group = span.operationName.startsWith('consensus.') ? ` group ${String(tagOf(span, 'concord.group_id'))}` : '';
        const name = `${serviceOf(each, span)}: ${span.operationName}${group}`;
        roots.set(name, (roots.get(name) ?? 0) + 1);
        assert.ok(expectedRoots.has(name), `a trace that is neither the request's nor a probe's nor an election's:\n${describeTrace(each)}`);
      }
    }
    assert.equal(roots.get(`${CLIENT_SERVICE}: ${ROOT_SPAN}`), 1, 'the request is one trace');
    t.diagnostic(`traces of the shards and coordinators since the start, by root span: ${JSON.stringify(Object.fromEntries(roots))}`);
  } catch (error) {
    if (error instanceof Error) error.message += `\n--- jaeger output:\n${jaeger.logs()}`;
    throw error;
  } finally {
    await cluster?.stop();
    await jaeger.stop();
  }
});
