import { status } from '@grpc/grpc-js';
import type { GetRingResponse } from '@concord/proto/cluster';
import { RING_HASH, type HashRing } from '@concord/ring';
import { ServiceError } from '@concord/runtime';
import { directoryFromSeed, type DirectoryState, type ShardGroupEntry } from './meta/directory-state.js';

export interface ShardDirectoryConfig {
  ringEpoch: number;
  ringVnodes: number;
  groups: readonly ShardGroupEntry[];
}

/** Where the directory's state comes from: the meta state machine (raft), or fixed configuration. */
export type DirectorySource = () => DirectoryState | undefined;

/** What a call that needs the ring gets while the meta group holds none yet. */
export const NO_RING_MESSAGE = 'the meta group holds no ring yet (its leader bootstraps it from --groups); retry';

/**
 * The ring and the shard-group directory (which replicas serve which group), as a read-only view
 * over the meta group's replicated state, or over the configuration with the config engine. Each
 * read sees the state as of the last entry the meta group applied: the ring object changes only
 * when its epoch does, so it is rebuilt exactly on an epoch change. Leader hints, which shard
 * replica leads its group, are this coordinator's own observations and are not replicated.
 */
export class ShardDirectory {
  private readonly source: DirectorySource;
  /** Leader addresses last reported by the groups' own replicas (Status probes). */
  private readonly leaderHints = new Map<string, string>();

  constructor(source: ShardDirectoryConfig | DirectorySource) {
    if (typeof source === 'function') {
      this.source = source;
    } else {
      const fixed = directoryFromSeed({ ringEpoch: source.ringEpoch, vnodes: source.ringVnodes, groups: source.groups }, 0);
      this.source = () => fixed;
    }
  }

  /** The current state, or undefined while the meta group holds no ring. */
  current(): DirectoryState | undefined {
    return this.source();
  }

  /** The current state; UNAVAILABLE while the meta group holds no ring. */
  require(): DirectoryState {
    const state = this.source();
    if (state === undefined) throw new ServiceError(status.UNAVAILABLE, NO_RING_MESSAGE);
    return state;
  }

  get ring(): HashRing {
    return this.require().ring;
  }

  /** The groups in ring order of group id. */
  get groups(): readonly ShardGroupEntry[] {
    return this.require().groups;
  }

  /** Records what a replica said about its group's leader ('' forgets it). */
  noteLeader(groupId: string, address: string): void {
    if (address === '') this.leaderHints.delete(groupId);
    else this.leaderHints.set(groupId, address);
  }

  leaderHint(groupId: string): string | undefined {
    return this.leaderHints.get(groupId);
  }

  /**
   * The routing table as Cluster.GetRing publishes it. `knownLeader` may add what the caller has
   * learned more recently than the last Status probe (the coordinator's router follows
   * NOT_LEADER hints on every call). A Status hint naming an address the group no longer lists
   * (its replicas were replaced since) is left out.
   */
  ringResponse(knownLeader: (groupId: string) => string | undefined = () => undefined): GetRingResponse {
    const { ring, groups } = this.require();
    return {
      epoch: ring.epoch,
      vnodesPerGroup: ring.vnodesPerGroup,
      hash: RING_HASH,
      groups: groups.map((group) => {
        const probed = this.leaderHint(group.groupId);
        const leader = knownLeader(group.groupId) ?? (probed !== undefined && group.addresses.includes(probed) ? probed : undefined);
        return { groupId: group.groupId, addresses: [...group.addresses], leaderAddress: leader ?? '' };
      }),
    };
  }
}
