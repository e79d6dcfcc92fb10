import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { ECHO_METHOD_PATH, ECHO_SERVICE } from '../echo-service.js';
import { etcdPutRequest, etcdRangeRequest, etcdRangeValue, H2GrpcChannel, H2GrpcError } from './h2-grpc.js';

async function startEcho(): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      if (call.request.toString() === 'fail') callback({ code: grpc.status.FAILED_PRECONDITION, details: 'asked to fail: 100%' });
      else callback(null, call.request);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

describe('the lean load generator (--client h2)', () => {
  it('makes unary gRPC calls on node:http2 that a grpc-js server answers, errors with their status', async () => {
    const { server, address } = await startEcho();
    const channel = new H2GrpcChannel(address);
    try {
      const big = Buffer.alloc(200_000, 7);
      assert.deepEqual(await channel.unary(ECHO_METHOD_PATH, Buffer.from('hello'), 5000), Buffer.from('hello'));
      // Larger than a frame and than the stream's first window: it arrives in many DATA frames.
      assert.ok((await channel.unary(ECHO_METHOD_PATH, big, 5000)).equals(big));
      const many = await Promise.all(Array.from({ length: 64 }, (_, i) => channel.unary(ECHO_METHOD_PATH, Buffer.from(`call ${i}`), 5000)));
      assert.deepEqual(
        many.map((answer) => answer.toString()),
        Array.from({ length: 64 }, (_, i) => `call ${i}`),
      );
      await assert.rejects(channel.unary(ECHO_METHOD_PATH, Buffer.from('fail'), 5000), (error: unknown) => {
        assert.ok(error instanceof H2GrpcError);
        assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
        assert.equal(error.details, 'asked to fail: 100%');
        return true;
      });
      await assert.rejects(channel.unary('/concord.bench.Echo/Nothing', Buffer.alloc(0), 5000), (error: unknown) => {
        assert.ok(error instanceof H2GrpcError);
        assert.equal(error.code, grpc.status.UNIMPLEMENTED);
        return true;
      });
    } finally {
      channel.close();
      server.forceShutdown();
    }
  });

  it('fails a call whose server is gone with UNAVAILABLE rather than hanging', async () => {
    const { server, address } = await startEcho();
    server.forceShutdown();
    const channel = new H2GrpcChannel(address);
    try {
      await assert.rejects(channel.unary(ECHO_METHOD_PATH, Buffer.from('x'), 1000), (error: unknown) => {
        assert.ok(error instanceof H2GrpcError);
        assert.equal(error.code, grpc.status.UNAVAILABLE);
        return true;
      });
    } finally {
      channel.close();
    }
  });

  it("writes etcd's PutRequest and RangeRequest and reads the value out of its RangeResponse", () => {
    assert.deepEqual(etcdPutRequest('k', Buffer.from('v')), Buffer.from([0x0a, 1, 0x6b, 0x12, 1, 0x76]));
    assert.deepEqual(etcdRangeRequest('key'), Buffer.from([0x0a, 3, 0x6b, 0x65, 0x79]));
    // A 300-byte value: its length is a two-byte varint (0xac 0x02).
    const value = Buffer.alloc(300, 9);
    const put = etcdPutRequest('k', value);
    assert.deepEqual(put.subarray(3, 6), Buffer.from([0x12, 0xac, 0x02]));
    assert.ok(put.subarray(6).equals(value));
    // RangeResponse { header = 1 { revision = 3: 5 }, kvs = 2 { key = 1, create_revision = 2,
    // mod_revision = 3, version = 4, value = 5 }, count = 4: 1 }
    const header = Buffer.from([0x0a, 2, 0x18, 5]);
    const kv = Buffer.concat([Buffer.from([0x0a, 1, 0x6b, 0x10, 7, 0x18, 8, 0x20, 1, 0x2a, 0xac, 0x02]), value]);
    const response = Buffer.concat([header, Buffer.from([0x12, kv.length % 128 | 128, kv.length >> 7]), kv, Buffer.from([0x20, 1])]);
    assert.ok(etcdRangeValue(response)?.equals(value));
    // No kvs: not found. A KeyValue without a value: an empty one.
    assert.equal(etcdRangeValue(Buffer.concat([header, Buffer.from([0x20, 0])])), undefined);
    assert.deepEqual(etcdRangeValue(Buffer.from([0x12, 3, 0x0a, 1, 0x6b])), Buffer.alloc(0));
    assert.throws(() => etcdRangeValue(Buffer.from([0x12, 9, 0x0a])), /runs past its message/);
  });

  it('drives a real group with `--client h2`, puts and verified gets, on two threads; refuses an unknown client', () => {
    const main = fileURLToPath(new URL('../main.js', import.meta.url));
    const common = [main, 'raft', '--systems', 'concord', '--members', '1', '--duration', '1', '--warmup', '0.3'];
    const args = [...common, '--scenarios', 'put-c64,get-c64', '--read-keys', '256', '--client-threads', '2', '--client', 'h2'];
    const run = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { config: { client: string }; results: { id: string; ops: number; errors: number; ops_by_thread?: number[] }[] };
    assert.equal(report.config.client, 'h2');
    assert.deepEqual(
      report.results.map((result) => result.id),
      ['concord-put-c64', 'concord-get-c64'],
    );
    for (const result of report.results) {
      // A get that does not find its 256-byte value counts as an error.
      assert.equal(result.errors, 0, result.id);
      assert.ok(result.ops > 64, `${result.id}: only ${result.ops} in the window`);
      assert.ok(result.ops_by_thread?.length === 2 && result.ops_by_thread.every((ops) => ops > 0), JSON.stringify(result.ops_by_thread));
    }
    const refused = spawnSync(process.execPath, [...common, '--client', 'grpc'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /--client: expected one of grpc-js, h2, got "grpc"/);
  });
});
