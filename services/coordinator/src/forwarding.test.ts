// LeaderForwarder between two real gRPC servers on 127.0.0.1: a "follower" whose KV service is
// wrapped, and a "leader" that records what reaches it.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Metadata, credentials, status, type ServiceError as GrpcError, type handleUnaryCall } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { KVClient, KVService, type DeleteResponse, type GetResponse, type KVServer, type PutResponse, type ScanResponse } from '@concord/proto/kv';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, ServiceError, callSignal, serverStream, unary, unaryHandlerOf } from '@concord/runtime';
import { LeaderForwarder, METADATA_FORWARDED_FROM, NO_META_LEADER_MESSAGE } from './forwarding.js';
import type { MetaLeader } from './meta/meta-group.js';
import { eventually, messages, testLogger } from './testing.js';

interface Arrival {
  method: string;
  metadata: Metadata;
  deadline: number;
}

/** A KV service answering from `who`, recording every call that reaches it. */
function recordingKv(who: string, arrivals: Arrival[], cancelled: string[]): KVServer {
  const note = (method: string, call: { metadata: Metadata; getDeadline(): Date | number }): void => {
    const deadline = call.getDeadline();
    arrivals.push({ method, metadata: call.metadata, deadline: deadline instanceof Date ? deadline.getTime() : deadline });
  };
  return {
    get: unary(async (request, call) => {
      note('get', call);
      if (request.key === 'hang') {
        const signal = callSignal(call);
        await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
        cancelled.push('get');
      }
      return { found: true, value: Buffer.from(`${who}:${request.key}`), version: 7 };
    }),
    put: unary(async (request, call) => {
      note('put', call);
      throw new ServiceError(status.ABORTED, `key ${request.key}: expected version 1 but found 42`, { 'concord-current-version': '42' });
    }),
    delete: unary(async (_request, call) => {
      note('delete', call);
      return { deleted: true, previousVersion: who === 'leader' ? 1 : 2 };
    }),
    scan: serverStream(async function* (request, call) {
      note('scan', call);
      if (request.prefix === 'hang/') {
        yield { kvs: [{ key: 'hang/0', value: Buffer.alloc(0), version: 1 }] };
        const signal = callSignal(call);
        await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
        cancelled.push('scan');
        return;
      }
      for (let i = 0; i < 40; i++) yield { kvs: [{ key: `k${String(i).padStart(2, '0')}`, value: Buffer.alloc(64 * 1024), version: i + 1 }] };
    }),
  };
}

describe('LeaderForwarder', () => {
  let leaderServer: ConcordServer;
  let followerServer: ConcordServer;
  let forwarder: LeaderForwarder;
  let client: KVClient;
  let view: MetaLeader;
  const arrivals: Arrival[] = [];
  const cancelled: string[] = [];
  const localArrivals: Arrival[] = [];

  before(async () => {
    leaderServer = await ConcordServer.start({
      host: '127.0.0.1',
      port: 0,
      logger: testLogger,
      services: [{ name: 'concord.v1.KV', definition: KVService, implementation: recordingKv('leader', arrivals, cancelled) }],
    });
    forwarder = new LeaderForwarder({ memberId: 'coordinator-1', leader: () => view });
    const implementation = forwarder.wrap(KVService, recordingKv('follower', localArrivals, []), {
      alwaysLocal: (_method, call) => call.metadata.get('x-local')[0] === 'yes',
      localWithoutLeader: (method) => method === 'delete',
    });
    followerServer = await ConcordServer.start({ host: '127.0.0.1', port: 0, logger: testLogger, services: [{ name: 'concord.v1.KV', definition: KVService, implementation }] });
    client = new KVClient(followerServer.address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  });

  beforeEach(() => {
    view = { kind: 'remote', memberId: 'coordinator-0', address: leaderServer.address };
    arrivals.length = 0;
    localArrivals.length = 0;
  });

  after(async () => {
    client.close();
    forwarder.close();
    await followerServer.shutdown();
    await leaderServer.shutdown();
  });

  const get = (metadata = new Metadata(), deadline?: Date) =>
    new Promise<GetResponse>((resolve, reject) =>
      client.get({ key: 'a', consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, metadata, deadline === undefined ? {} : { deadline }, (error, response) =>
        error === null ? resolve(response) : reject(error),
      ),
    );
  const del = (metadata = new Metadata()) =>
    new Promise<DeleteResponse>((resolve, reject) => client.delete({ key: 'a' }, metadata, (error, response) => (error === null ? resolve(response) : reject(error))));

  it("forwards a unary call with the client's metadata and deadline, naming the forwarding member", async () => {
    const metadata = new Metadata();
    metadata.set('x-request-id', 'r-1');
    const deadline = new Date(Date.now() + 30_000);
    const response = await get(metadata, deadline);
    assert.equal(response.value.toString(), 'leader:a');
    assert.equal(localArrivals.length, 0);
    const [arrival] = arrivals;
    assert.ok(arrival);
    assert.deepEqual(arrival.metadata.get('x-request-id'), ['r-1']);
    assert.deepEqual(arrival.metadata.get(METADATA_FORWARDED_FROM), ['coordinator-1']);
    // The same deadline, give or take how long the hop took (grpc carries it as a timeout).
    assert.ok(Math.abs(arrival.deadline - deadline.getTime()) < 5000, `leader saw deadline ${arrival.deadline}, client set ${deadline.getTime()}`);

    await get();
    assert.equal(arrivals[1]?.deadline, Infinity, 'no deadline stays no deadline');
  });

  it('keeps a unary() method on the direct path (and refuses any other), and a unary call the client cancels ends at the leader too', async () => {
    const wrapped = forwarder.wrap(KVService, recordingKv('follower', [], []));
    assert.ok(unaryHandlerOf(wrapped['get'] as handleUnaryCall<unknown, unknown>), 'a forwarded unary() method is still answered directly');
    const plainGet = (_call: unknown, callback: (error: null, response: GetResponse) => void) => callback(null, { found: false, value: Buffer.alloc(0), version: 0 });
    assert.throws(() => forwarder.wrap(KVService, { ...recordingKv('follower', [], []), get: plainGet }), /KV\/Get: forwarding needs a handler made with unary\(\)/);

    cancelled.length = 0;
    const call = client.get({ key: 'hang', consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, () => {});
    await eventually('the hanging get reaches the leader', () => arrivals.some((arrival) => arrival.method === 'get'));
    call.cancel();
    await eventually("the leader's get is cancelled", () => cancelled.includes('get'));
  });

  it('relays a failure with its status, message and trailing metadata', async () => {
    await assert.rejects(
      new Promise<PutResponse>((resolve, reject) => client.put({ key: 'k', value: Buffer.from('v') }, (error, response) => (error === null ? resolve(response) : reject(error)))),
      (error: GrpcError) => {
        assert.equal(error.code, status.ABORTED);
        assert.equal(error.details, 'key k: expected version 1 but found 42');
        assert.deepEqual(error.metadata.get('concord-current-version'), ['42']);
        return true;
      },
    );
  });

  it('forwards a server stream message by message, in order', async () => {
    const batches = await messages<ScanResponse>(client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 }));
    assert.deepEqual(
      batches.flatMap((batch) => batch.kvs.map((kv) => kv.key)),
      Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`),
    );
  });

  it("cancels the leader's stream when the client cancels", async () => {
    const stream = client.scan({ prefix: 'hang/', startKey: '', endKey: '', limit: 0, consistency: 0 });
    stream.on('error', () => undefined);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.cancel();
    await eventually('the leader to see the cancellation', () => cancelled.includes('scan'));
  });

  it('without a leader: UNAVAILABLE "no meta leader elected yet; retry", unless the method may answer locally', async () => {
    view = { kind: 'unknown' };
    await assert.rejects(get(), (error: GrpcError) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.details, NO_META_LEADER_MESSAGE);
      // Refused before anything was done: a client may take it to another coordinator.
      assert.deepEqual(error.metadata.get('concord-reason'), ['NOT_LEADER']);
      assert.deepEqual(error.metadata.get('concord-leader'), []);
      return true;
    });
    await assert.rejects(messages(client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 })), (error: GrpcError) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.details, NO_META_LEADER_MESSAGE);
      return true;
    });
    assert.equal((await del()).previousVersion, 2, 'answered by the follower itself');
    assert.equal(arrivals.length, 0);
  });

  it('serves locally on the leader and for calls the policy keeps local', async () => {
    view = { kind: 'self' };
    assert.equal((await get()).value.toString(), 'follower:a');
    view = { kind: 'remote', memberId: 'coordinator-0', address: leaderServer.address };
    const local = new Metadata();
    local.set('x-local', 'yes');
    assert.equal((await get(local)).value.toString(), 'follower:a');
    assert.equal(arrivals.length, 0);
  });

  it('never forwards a call twice: a forwarded call reaching a non-leader is refused with NOT_LEADER', async () => {
    const forwarded = new Metadata();
    forwarded.set(METADATA_FORWARDED_FROM, 'coordinator-2');
    await assert.rejects(get(forwarded), (error: GrpcError) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.match(error.details, /^coordinator coordinator-1 no longer leads the meta group \(coordinator-2 forwarded this call here; the leader is now coordinator-0 at /);
      assert.deepEqual(error.metadata.get('concord-reason'), ['NOT_LEADER']);
      assert.deepEqual(error.metadata.get('concord-leader'), [leaderServer.address]);
      return true;
    });
    assert.equal(arrivals.length, 0);
  });

  it('answers UNAVAILABLE NOT_LEADER when the leader cannot be reached, or locally where the policy allows', async () => {
    view = { kind: 'remote', memberId: 'coordinator-0', address: '127.0.0.1:1' };
    // Not grpc-js's "No connection established" relayed as is: that would read as if this member
    // refused the client's connection. NOT_LEADER without a leader: nothing was done, retry.
    const refused = (error: GrpcError) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.match(error.details, /^coordinator coordinator-1 cannot reach the meta leader coordinator-0 at 127\.0\.0\.1:1 \(No connection established\..*ECONNREFUSED.*\); nothing was done, retry$/);
      assert.deepEqual(error.metadata.get('concord-reason'), ['NOT_LEADER']);
      assert.deepEqual(error.metadata.get('concord-leader'), []);
      return true;
    };
    await assert.rejects(get(new Metadata(), new Date(Date.now() + 10_000)), refused);
    await assert.rejects(messages(client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 })), refused);
    // A method that may answer without a leader answers locally instead.
    assert.equal((await del()).previousVersion, 2);
  });
});
