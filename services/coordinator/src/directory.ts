import type { GetRingResponse } from '@concord/proto/cluster';
import { HashRing, RING_HASH, compareGroupIds } from '@concord/ring';
import type { ShardGroupConfig } from './options.js';

export interface ShardDirectoryConfig {
  ringEpoch: number;
  ringVnodes: number;
  groups: readonly ShardGroupConfig[];
}

/**
 * The ring and the shard-group directory (which replicas serve which group). For now both come
 * from the coordinator's configuration, so every coordinator started with the same --groups holds
 * the same ring. Keeping them in the replicated meta group, so that groups can be added and
 * removed online at a new epoch, is a later step; docs/architecture.md describes the target.
 */
export class ShardDirectory {
  readonly ring: HashRing;
  /** The groups in ring order of group id. */
  readonly groups: readonly ShardGroupConfig[];
  /** Leader addresses last reported by the groups' own replicas (Status probes). */
  private readonly leaderHints = new Map<string, string>();

  constructor(config: ShardDirectoryConfig) {
    this.ring = new HashRing({ epoch: config.ringEpoch, vnodesPerGroup: config.ringVnodes, groups: config.groups.map((group) => group.groupId) });
    this.groups = [...config.groups]
      .map((group) => ({ groupId: group.groupId, addresses: [...group.addresses] }))
      .sort((a, b) => compareGroupIds(a.groupId, b.groupId));
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
   * NOT_LEADER hints on every call).
   */
  ringResponse(knownLeader: (groupId: string) => string | undefined = () => undefined): GetRingResponse {
    return {
      epoch: this.ring.epoch,
      vnodesPerGroup: this.ring.vnodesPerGroup,
      hash: RING_HASH,
      groups: this.groups.map((group) => ({
        groupId: group.groupId,
        addresses: [...group.addresses],
        leaderAddress: knownLeader(group.groupId) ?? this.leaderHint(group.groupId) ?? '',
      })),
    };
  }
}
