// Mutual TLS between every component, with real processes: a CA, one certificate for the cluster's
// processes (naming 127.0.0.1 and localhost) and one for the client, three coordinators (the meta
// group's Raft traffic, forwarding and status probes between them) and a three-replica shard group,
// every process started with --tls-cert/--tls-key/--tls-ca. Defends: the SDK with TLS reads its
// writes, directly from the shard leader and forwarded by a follower coordinator; Cluster.Status
// reaches every member (coordinator to shard and to coordinator over TLS); and a plaintext client,
// a client presenting a certificate of another CA and a client presenting none are refused
// (UNAVAILABLE) by coordinators and shards alike, having changed nothing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ConcordClient, ConcordError, tlsCredentials, type TlsOptions } from '@concord/client';
import { MemberRole } from '@concord/proto/cluster';
import { KVClient } from '@concord/proto/kv';
import { ShardClient } from '@concord/proto/shard';
import { CLIENT_CHANNEL_OPTIONS } from '@concord/runtime';
import { createCertificateAuthority, issueCertificate } from '@concord/runtime/testing';
import { startLocalCluster } from './harness/cluster.js';
import { describeError, failure, unary } from './harness/grpc.js';

const GROUP = 'g1';
/** Deadline of one refused call: a liveness bound, the refusal comes at the handshake. */
const REFUSED_DEADLINE_MS = 5_000;

test('mutual TLS: every component speaks TLS, and clients without a certificate of the cluster CA are refused', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'concord-tls-'));
  const ca = createCertificateAuthority(dir, 'cluster-ca');
  const node = issueCertificate(ca, dir, 'concord-node', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const user = issueCertificate(ca, dir, 'concord-user');
  const otherCa = createCertificateAuthority(dir, 'other-ca');
  const stranger = issueCertificate(otherCa, dir, 'stranger', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const pem = (path: string): Buffer => readFileSync(path);
  const userTls: TlsOptions = { ca: pem(ca.cert), cert: pem(user.cert), key: pem(user.key) };

  const cluster = await startLocalCluster({ groups: [GROUP], tls: { cert: node.cert, key: node.key, ca: ca.cert } }).catch(async (error: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw error;
  });
  const clients: { close(): void }[] = [];
  try {
    const metaLeader = await cluster.metaLeader();
    const follower = cluster.coordinatorNames.find((name) => name !== metaLeader.name)!;
    t.diagnostic(`meta leader ${metaLeader.name}; forwarding through ${follower}`);

    // 1. The SDK with TLS: direct routing (coordinator for the ring, then the shard leader) ...
    const direct = await ConcordClient.connect({ address: cluster.coordinatorAddresses, tls: userTls });
    clients.push(direct);
    const written = await direct.put('tls:direct', 'over tls');
    assert.deepEqual(await direct.get('tls:direct'), { found: true, value: Buffer.from('over tls'), version: written.version });

    // ... and through a follower coordinator, which forwards to the meta leader over TLS.
    const forwarded = await ConcordClient.connect({ address: cluster.address(follower), routing: 'coordinator', tls: userTls });
    clients.push(forwarded);
    await forwarded.put('tls:forwarded', 'via a follower');
    assert.equal((await forwarded.get('tls:forwarded')).value.toString(), 'via a follower');
    assert.equal((await direct.get('tls:forwarded')).value.toString(), 'via a follower');

    // 2. Status gathers every member: the coordinators probe the shards and each other over TLS.
    const status = await forwarded.status();
    const members = [...(status.meta?.members ?? []), ...status.groups.flatMap((group) => group.members)];
    assert.equal(members.length, 6, JSON.stringify(status));
    for (const member of members) {
      assert.notEqual(member.role, MemberRole.MEMBER_ROLE_UNREACHABLE, `${member.address} is reachable over TLS: ${member.error}`);
    }

    // 3. Refused at the handshake: nothing reaches the services. One attempt each, on a raw
    //    client, so the status is the handshake's own rather than a retry loop's.
    const shardAddress = (await cluster.leaderOf(GROUP)).address;
    const refusedClients: { name: string; credentials: grpc.ChannelCredentials }[] = [
      { name: 'a plaintext client', credentials: grpc.credentials.createInsecure() },
      { name: 'a client with a certificate of another CA', credentials: tlsCredentials({ ca: pem(ca.cert), cert: pem(stranger.cert), key: pem(stranger.key) }) },
      { name: 'a client without a certificate', credentials: tlsCredentials({ ca: pem(ca.cert) }) },
    ];
    for (const { name, credentials } of refusedClients) {
      const kv = new KVClient(cluster.coordinatorAddress, credentials, CLIENT_CHANNEL_OPTIONS);
      const shard = new ShardClient(shardAddress, credentials, CLIENT_CHANNEL_OPTIONS);
      clients.push(kv, shard);
      const put = await failure(unary(kv.put.bind(kv), { key: 'tls:refused', value: Buffer.from(name) }, REFUSED_DEADLINE_MS), `${name}: KV.Put`);
      assert.equal(put.code, grpc.status.UNAVAILABLE, `${name}: KV.Put on a coordinator is refused (${describeError(put)})`);
      const shardStatus = await failure(unary(shard.status.bind(shard), {}, REFUSED_DEADLINE_MS), `${name}: Shard.Status`);
      assert.equal(shardStatus.code, grpc.status.UNAVAILABLE, `${name}: Shard.Status on a shard is refused (${describeError(shardStatus)})`);
      t.diagnostic(`${name}: ${describeError(put)}`);
    }

    // The SDK without TLS cannot even fetch the ring.
    const plaintext = await ConcordClient.connect({ address: cluster.coordinatorAddress, deadlineMs: REFUSED_DEADLINE_MS }).then(
      (client) => {
        clients.push(client);
        return undefined;
      },
      (error: unknown) => error,
    );
    assert.ok(plaintext instanceof ConcordError, `a plaintext SDK client is refused (got ${String(plaintext)})`);
    assert.ok([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(plaintext.code), `refused: ${plaintext.message}`);

    // None of the refused calls changed anything.
    assert.equal((await direct.get('tls:refused')).found, false);
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
