// The coordinators a client knows, and the rule for moving a call from one to another: like etcd's
// `--endpoints`, a client may be given several, and a call that one of them could not serve is sent
// to the next.
import { status, type ChannelCredentials } from '@grpc/grpc-js';
import { ClusterClient } from '@concord/proto/cluster';
import { KVClient } from '@concord/proto/kv';
import { CHANNEL_OPTIONS } from './calls.js';
import { ConcordError, REASON_NOT_LEADER, connectionLost, failedBeforeSending, toConcordError } from './errors.js';

/** Pause after a round in which every coordinator failed; doubles per round up to the maximum. */
export const DEFAULT_COORDINATOR_BACKOFF_MS = 50;
export const DEFAULT_COORDINATOR_MAX_BACKOFF_MS = 1000;

/**
 * Parses coordinator addresses: a list, or one string of host:port entries separated by commas
 * (how `--addr` and CONCORD_ADDR give them). Refuses an empty list.
 */
export function parseCoordinatorAddresses(addresses: string | readonly string[]): string[] {
  const entries = (typeof addresses === 'string' ? [addresses] : addresses)
    .flatMap((entry) => entry.split(','))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw new ConcordError(status.INVALID_ARGUMENT, 'address: name at least one coordinator as host:port');
  return [...new Set(entries)];
}

/**
 * Whether a call that failed on one coordinator may be sent to another. Any coordinator serves any
 * call (followers forward to the meta leader), so this is about the failure only:
 * - no connection could be established (`failedBeforeSending`): nothing was sent, even a write may
 *   go elsewhere;
 * - `concord-reason: NOT_LEADER`: the coordinator refused the call before doing anything (no meta
 *   leader is known, the leader it knows cannot be reached, or a forwarded call reached a
 *   coordinator that no longer leads);
 * - for a read, also a connection that broke with the call in flight (`connectionLost`).
 * Anything else — a shard group that is down, a bad request, a deadline — is the answer, whichever
 * coordinator gives it.
 */
export function worthAnotherCoordinator(error: ConcordError, operation: 'read' | 'write'): boolean {
  if (error.code !== status.UNAVAILABLE) return false;
  if (failedBeforeSending(error) || error.reason === REASON_NOT_LEADER) return true;
  return operation === 'read' && connectionLost(error);
}

export interface CoordinatorSetOptions {
  addresses: readonly string[];
  credentials: ChannelCredentials;
  backoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * One channel per coordinator (made when first used) and the one to try first: the last that
 * answered. A call goes to it; when it fails in a way `worthAnotherCoordinator` allows, the next
 * coordinator is tried, and after a round in which every one failed, the round starts again after
 * a pause (a meta election takes about a second), until the call's deadline. With one coordinator
 * that refuses connections there is nothing to wait for: the call fails at once, as a plain gRPC
 * client would.
 */
export class CoordinatorSet {
  readonly addresses: readonly string[];
  private readonly credentials: ChannelCredentials;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clusterClients = new Map<string, ClusterClient>();
  private readonly kvClients = new Map<string, KVClient>();
  private current = 0;

  constructor(options: CoordinatorSetOptions) {
    this.addresses = parseCoordinatorAddresses(options.addresses);
    this.credentials = options.credentials;
    this.backoffMs = options.backoffMs ?? DEFAULT_COORDINATOR_BACKOFF_MS;
    this.maxBackoffMs = options.maxBackoffMs ?? DEFAULT_COORDINATOR_MAX_BACKOFF_MS;
  }

  cluster(address: string): ClusterClient {
    let client = this.clusterClients.get(address);
    if (client === undefined) {
      client = new ClusterClient(address, this.credentials, CHANNEL_OPTIONS);
      this.clusterClients.set(address, client);
    }
    return client;
  }

  kv(address: string): KVClient {
    let client = this.kvClients.get(address);
    if (client === undefined) {
      client = new KVClient(address, this.credentials, CHANNEL_OPTIONS);
      this.kvClients.set(address, client);
    }
    return client;
  }

  /** Runs `invoke` against a coordinator, moving on to the others as described above. */
  async call<T>(operation: 'read' | 'write', deadline: Date, invoke: (address: string) => Promise<T>): Promise<T> {
    const count = this.addresses.length;
    for (let attempt = 1; ; attempt++) {
      const index = this.current;
      const address = this.addresses[index] as string;
      try {
        return await invoke(address);
      } catch (caught) {
        const error = toConcordError(caught);
        if (!worthAnotherCoordinator(error, operation)) throw error.withAttempts(attempt);
        if (count === 1 && failedBeforeSending(error)) throw error;
        // Another call may have moved on already; only move past the coordinator that failed.
        if (this.current === index) this.current = (index + 1) % count;
        if (attempt % count === 0) {
          const round = attempt / count;
          const pauseMs = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (round - 1));
          if (Date.now() + pauseMs >= deadline.getTime()) throw error.withAttempts(attempt);
          await new Promise((resolve) => setTimeout(resolve, pauseMs));
        } else if (Date.now() >= deadline.getTime()) {
          throw error.withAttempts(attempt);
        }
      }
    }
  }

  close(): void {
    for (const client of [...this.clusterClients.values(), ...this.kvClients.values()]) client.close();
    this.clusterClients.clear();
    this.kvClients.clear();
  }
}
