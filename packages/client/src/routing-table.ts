import { status } from '@grpc/grpc-js';
import type { GetRingResponse } from '@concord/proto/cluster';
import { HashRing, RING_HASH } from '@concord/ring';
import { ConcordError } from './errors.js';

/**
 * Where to send a key: Cluster.GetRing's answer (or anything shaped like it). The coordinator
 * serves it over gRPC; inside the coordinator it is built from configuration without a network hop.
 */
export type RingSource = () => Promise<GetRingResponse>;

/**
 * The replicas of one shard group and which of them to try first. The known leader goes first;
 * without one, a cursor walks the member addresses so a dead replica is skipped on the next call.
 * A replica that refused connections is remembered for a while (`markUnreachable`): the cursor
 * passes over it, and a NOT_LEADER hint naming it is not followed — after a leader dies, its
 * followers keep naming it until they notice, about an election timeout later.
 */
export class GroupRoute {
  private leader: string | undefined;
  private cursor = 0;
  /** Address → time (ms since the epoch) until which it is taken as unreachable. */
  private readonly unreachableUntil = new Map<string, number>();

  constructor(
    readonly groupId: string,
    readonly addresses: readonly string[],
    leaderAddress: string | undefined,
  ) {
    this.leader = leaderAddress === '' ? undefined : leaderAddress;
  }

  /** The leader when known, else the replica the cursor points at. */
  preferred(): string {
    return this.leader ?? (this.addresses[this.cursor % this.addresses.length] as string);
  }

  /** The leader as last learned (ring, NOT_LEADER hint or a successful leader-only call). */
  knownLeader(): string | undefined {
    return this.leader;
  }

  /** `address` answered a call only a leader serves. */
  confirmLeader(address: string): void {
    this.leader = address;
    this.unreachableUntil.delete(address);
  }

  /** A replica named `address` as its leader (concord-leader). It may be outside `addresses`. */
  followHint(address: string): void {
    this.leader = address;
  }

  /**
   * `address` failed or is not the leader: forget it as leader and move to the next replica, past
   * those taken as unreachable at `now` (unless every other one is).
   */
  skip(address: string, now = Date.now()): void {
    if (this.leader === address) this.leader = undefined;
    const index = this.addresses.indexOf(address);
    this.cursor = index === -1 ? this.cursor + 1 : index + 1;
    for (let step = 0; step < this.addresses.length - 1; step++) {
      if (!this.isUnreachable(this.addresses[this.cursor % this.addresses.length] as string, now)) break;
      this.cursor += 1;
    }
  }

  /** No connection to `address` could be established: take it as unreachable until `until`. */
  markUnreachable(address: string, until: number): void {
    this.unreachableUntil.set(address, until);
  }

  /** Whether `address` refused connections recently (see markUnreachable). */
  isUnreachable(address: string, now = Date.now()): boolean {
    const until = this.unreachableUntil.get(address);
    if (until === undefined) return false;
    if (until > now) return true;
    this.unreachableUntil.delete(address);
    return false;
  }
}

/** One immutable snapshot of the routing table: the ring and the groups it names. */
export class RoutingTable {
  private constructor(
    readonly ring: HashRing,
    readonly groups: ReadonlyMap<string, GroupRoute>,
  ) {}

  get epoch(): number {
    return this.ring.epoch;
  }

  /**
   * Checks and adopts a GetRing answer. A hash this client does not implement would send keys to
   * the wrong groups, so it is refused rather than guessed. Leaders known from `previous` are kept
   * when the new table does not name one, so a refresh does not forget a hint learned since.
   */
  static from(response: GetRingResponse, previous: RoutingTable | undefined): RoutingTable {
    const refuse = (what: string): never => {
      throw new ConcordError(status.FAILED_PRECONDITION, `ring from the coordinator is unusable: ${what}`);
    };
    if (response.hash !== RING_HASH) refuse(`hash ${JSON.stringify(response.hash)} is not supported (this client knows ${RING_HASH})`);
    if (response.groups.length === 0) refuse('it names no shard groups');
    const groups = new Map<string, GroupRoute>();
    for (const group of response.groups) {
      if (group.groupId === '') refuse('a group has an empty group_id');
      if (groups.has(group.groupId)) refuse(`group ${group.groupId} appears twice`);
      const addresses = group.addresses.length > 0 ? [...group.addresses] : group.leaderAddress !== '' ? [group.leaderAddress] : [];
      if (addresses.length === 0) refuse(`group ${group.groupId} has no addresses`);
      const keptLeader = previous?.groups.get(group.groupId)?.knownLeader();
      const leader = group.leaderAddress !== '' ? group.leaderAddress : keptLeader !== undefined && addresses.includes(keptLeader) ? keptLeader : undefined;
      groups.set(group.groupId, new GroupRoute(group.groupId, addresses, leader));
    }
    let ring: HashRing;
    try {
      ring = new HashRing({ epoch: response.epoch, vnodesPerGroup: response.vnodesPerGroup, groups: [...groups.keys()] });
    } catch (error) {
      return refuse(error instanceof Error ? error.message : String(error));
    }
    return new RoutingTable(ring, groups);
  }

  /** The group that owns `key`. */
  routeOf(key: string): GroupRoute {
    const groupId = this.ring.ownerOf(key);
    const route = this.groups.get(groupId);
    // The ring is built from exactly these groups, so a miss is a bug, not a cluster state.
    if (route === undefined) throw new Error(`ring returned unknown group ${groupId}`);
    return route;
  }
}
