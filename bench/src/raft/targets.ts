// How the Raft benchmark talks to each system: the write, the linearizable read and who leads,
// through each system's own client, one HTTP/2 connection to the leader. Used by the main thread
// and by the load's extra client threads (client-threads.ts).
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { CHANNEL_OPTIONS } from '@concord/proto';
import { ReadConsistency } from '@concord/proto/common';
import { ShardClient, ShardGetRequest, ShardGetResponse, ShardPutRequest, ShardService, type ShardStatusResponse } from '@concord/proto/shard';
import { etcdPutRequest, etcdRangeRequest, etcdRangeValue, H2GrpcChannel } from './h2-grpc.js';

export type System = 'concord' | 'etcd';
export type Op = 'put' | 'get';
/**
 * What makes the requests: each system's own Node client (the generated Concord stub and the
 * etcd3 package, both on grpc-js), or the same lean unary calls on node:http2 for both (h2-grpc.ts).
 */
export type ClientKind = 'grpc-js' | 'h2';
export const CLIENT_KINDS: readonly ClientKind[] = ['grpc-js', 'h2'];

export const KEY_BYTES = 16;
export const VALUE_BYTES = 256;
const LEADER_TIMEOUT_MS = 30_000;

export /** What one system offers the loop: its write, its linearizable read, and who leads. */
interface Target {
  put(key: string, value: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /** The leader's process name (for the CPU roles and to detect a change). */
  leader(): Promise<string>;
  close(): void;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export /** `prefix` then the index, zero-padded to KEY_BYTES. */
function benchKey(prefix: string, index: number): string {
  return `${prefix}${String(index).padStart(KEY_BYTES - prefix.length, '0')}`;
}

/** A client of `system` connected to its leader: Concord's shard addresses or etcd's client URLs, by member name. */
export function connectTarget(system: System, endpoints: ReadonlyMap<string, string>, deadlineMs: number, client: ClientKind): Promise<Target> {
  return system === 'concord' ? concordTarget(endpoints, deadlineMs, client) : etcdTarget(endpoints, deadlineMs, client);
}

// ---------------------------------------------------------------- Concord

function unary<Req, Res>(
  call: (request: Req, metadata: Metadata, options: { deadline: Date }, callback: (error: ServiceError | null, response: Res) => void) => unknown,
  request: Req,
  deadlineMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call(request, new Metadata(), { deadline: new Date(Date.now() + deadlineMs) }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

async function concordTarget(addresses: ReadonlyMap<string, string>, deadlineMs: number, client: ClientKind): Promise<Target> {
  const clients = new Map([...addresses].map(([name, address]) => [name, new ShardClient(address, credentials.createInsecure(), CHANNEL_OPTIONS)]));
  const close = (): void => {
    for (const client of clients.values()) client.close();
  };
  const findLeader = async (): Promise<{ name: string; status: ShardStatusResponse }> => {
    const deadline = Date.now() + LEADER_TIMEOUT_MS;
    for (;;) {
      for (const [name, client] of clients) {
        const status = await unary(client.status.bind(client), {}, 1000).catch(() => undefined);
        if (status?.role === 'LEADER') return { name, status };
      }
      if (Date.now() > deadline) throw new Error(`no Concord leader within ${LEADER_TIMEOUT_MS} ms`);
      await sleep(100);
    }
  };
  try {
    const { name, status } = await findLeader();
    const leader = clients.get(name)!;
    const ringEpoch = status.ringEpoch;
    if (client === 'h2') {
      const channel = new H2GrpcChannel(addresses.get(name)!);
      const putPath = ShardService.put.path;
      const getPath = ShardService.get.path;
      return {
        put: async (key, value) => {
          await channel.unary(putPath, ShardPutRequest.encode({ ringEpoch, key, value }).finish(), deadlineMs);
        },
        get: async (key) => {
          const request = ShardGetRequest.encode({ ringEpoch, key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }).finish();
          const found = ShardGetResponse.decode(await channel.unary(getPath, request, deadlineMs));
          return found.found ? found.value : undefined;
        },
        leader: async () => (await findLeader()).name,
        close: () => {
          channel.close();
          close();
        },
      };
    }
    // Bound once, as an application holds its stub: not a function per call.
    const put = leader.put.bind(leader);
    const get = leader.get.bind(leader);
    return {
      put: async (key, value) => {
        await unary(put, { ringEpoch, key, value }, deadlineMs);
      },
      get: async (key) => {
        const found = await unary(get, { ringEpoch, key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, deadlineMs);
        return found.found ? found.value : undefined;
      },
      leader: async () => (await findLeader()).name,
      close,
    };
  } catch (error) {
    close();
    throw error;
  }
}

// ---------------------------------------------------------------- etcd

async function etcdTarget(urls: ReadonlyMap<string, string>, deadlineMs: number, client: ClientKind): Promise<Target> {
  const perMember = new Map([...urls].map(([name, url]) => [name, new Etcd3({ hosts: url })]));
  const close = (): void => {
    for (const client of perMember.values()) client.close();
  };
  const findLeader = async (): Promise<string> => {
    const deadline = Date.now() + LEADER_TIMEOUT_MS;
    for (;;) {
      for (const [name, client] of perMember) {
        const status = await client.maintenance.status({ deadline: new Date(Date.now() + 1000) }).catch(() => undefined);
        if (status !== undefined && status.leader !== '0' && status.leader === status.header.member_id) return name;
      }
      if (Date.now() > deadline) throw new Error(`no etcd leader within ${LEADER_TIMEOUT_MS} ms`);
      await sleep(100);
    }
  };
  try {
    const leaderName = await findLeader();
    if (client === 'h2') {
      const channel = new H2GrpcChannel(urls.get(leaderName)!);
      return {
        put: async (key, value) => {
          await channel.unary('/etcdserverpb.KV/Put', etcdPutRequest(key, value), deadlineMs);
        },
        get: async (key) => etcdRangeValue(await channel.unary('/etcdserverpb.KV/Range', etcdRangeRequest(key), deadlineMs)),
        leader: findLeader,
        close: () => {
          channel.close();
          close();
        },
      };
    }
    // One client, one connection, to the leader: the same shape as the Concord side.
    const leader = perMember.get(leaderName)!;
    const callOptions = () => ({ deadline: new Date(Date.now() + deadlineMs) });
    return {
      put: async (key, value) => {
        await leader.put(key).value(value).options(callOptions()).exec();
      },
      get: async (key) => (await leader.get(key).options(callOptions()).buffer()) ?? undefined,
      leader: findLeader,
      close,
    };
  } catch (error) {
    close();
    throw error;
  }
}

