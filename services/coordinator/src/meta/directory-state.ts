// The shard-group directory as the meta group replicates it: the ring (epoch, virtual nodes, group
// ids) and the replica addresses of every group. Values of this type are immutable; every change
// builds a new one, so a reader holding one never sees it change under it.

import { HashRing, MAX_VNODES_PER_GROUP, compareGroupIds } from '@concord/ring';
import { ID_DOC, ID_PATTERN } from '@concord/runtime';
import { addressProblem } from '../addresses.js';

/** One shard group: its id on the ring and the address of every replica, in the order given. */
export interface ShardGroupEntry {
  readonly groupId: string;
  readonly addresses: readonly string[];
}

export interface DirectoryState {
  readonly ring: HashRing;
  /** Every group on the ring, in ring order of group id (compareGroupIds). */
  readonly groups: readonly ShardGroupEntry[];
  /** Log index of the command that last changed the directory; 0 for one built from configuration. */
  readonly changedAt: number;
}

/** What a directory is built from: the fields of a bootstrap command. */
export interface DirectorySeed {
  ringEpoch: number;
  vnodes: number;
  groups: readonly ShardGroupEntry[];
}

/** Why `groupId` is not a usable group id, or undefined. */
export function groupIdProblem(groupId: string): string | undefined {
  return ID_PATTERN.test(groupId) ? undefined : `group id must be ${ID_DOC} (got ${JSON.stringify(groupId)})`;
}

/**
 * Why a group's replica list is unusable, or undefined. `owners` maps the addresses of the other
 * groups to their group: two groups sharing a replica would each believe they own its keys.
 */
export function addressesProblem(groupId: string, addresses: readonly string[], owners: ReadonlyMap<string, string>): string | undefined {
  if (addresses.length === 0) return `group ${groupId}: must list at least one replica address`;
  const seen = new Set<string>();
  for (const address of addresses) {
    const problem = addressProblem(address);
    if (problem !== undefined) return `group ${groupId}: ${problem} (got ${JSON.stringify(address)})`;
    if (seen.has(address)) return `group ${groupId} lists ${address} twice`;
    seen.add(address);
    const owner = owners.get(address);
    if (owner !== undefined && owner !== groupId) return `${address} is already a replica of group ${owner}`;
  }
  return undefined;
}

/** Replica address → group, over `groups` except `exceptGroupId`. */
export function addressOwners(groups: readonly ShardGroupEntry[], exceptGroupId?: string): Map<string, string> {
  const owners = new Map<string, string>();
  for (const group of groups) {
    if (group.groupId === exceptGroupId) continue;
    for (const address of group.addresses) owners.set(address, group.groupId);
  }
  return owners;
}

/** Why a seed cannot become a directory, or undefined. */
export function seedProblem(seed: DirectorySeed): string | undefined {
  if (!Number.isSafeInteger(seed.ringEpoch) || seed.ringEpoch < 1) return `ring epoch must be an integer of at least 1 (got ${seed.ringEpoch})`;
  if (!Number.isInteger(seed.vnodes) || seed.vnodes < 1 || seed.vnodes > MAX_VNODES_PER_GROUP) {
    return `virtual nodes per group must be an integer from 1 to ${MAX_VNODES_PER_GROUP} (got ${seed.vnodes})`;
  }
  if (seed.groups.length === 0) return 'must name at least one shard group';
  const ids = new Set<string>();
  const owners = new Map<string, string>();
  for (const group of seed.groups) {
    const idProblem = groupIdProblem(group.groupId);
    if (idProblem !== undefined) return idProblem;
    if (ids.has(group.groupId)) return `group ${group.groupId} is listed twice`;
    ids.add(group.groupId);
    const problem = addressesProblem(group.groupId, group.addresses, owners);
    if (problem !== undefined) return problem;
    for (const address of group.addresses) owners.set(address, group.groupId);
  }
  return undefined;
}

/** Groups copied and frozen, in ring order of group id. */
export function canonicalGroups(groups: readonly ShardGroupEntry[]): readonly ShardGroupEntry[] {
  return Object.freeze(
    [...groups]
      .map((group) => Object.freeze({ groupId: group.groupId, addresses: Object.freeze([...group.addresses]) }))
      .sort((a, b) => compareGroupIds(a.groupId, b.groupId)),
  );
}

/** Builds a directory from a seed that seedProblem accepted. */
export function directoryFromSeed(seed: DirectorySeed, changedAt: number): DirectoryState {
  const groups = canonicalGroups(seed.groups);
  const ring = new HashRing({ epoch: seed.ringEpoch, vnodesPerGroup: seed.vnodes, groups: groups.map((group) => group.groupId) });
  return Object.freeze({ ring, groups, changedAt });
}

/** The seed a directory was built from (or would be rebuilt from). */
export function seedOf(directory: DirectoryState): DirectorySeed {
  return { ringEpoch: directory.ring.epoch, vnodes: directory.ring.vnodesPerGroup, groups: directory.groups };
}

/** Whether two seeds describe the same ring and replicas (group order aside; replica order counts). */
export function sameSeed(a: DirectorySeed, b: DirectorySeed): boolean {
  if (a.ringEpoch !== b.ringEpoch || a.vnodes !== b.vnodes || a.groups.length !== b.groups.length) return false;
  const left = canonicalGroups(a.groups);
  const right = canonicalGroups(b.groups);
  return left.every((group, i) => {
    const other = right[i];
    return (
      other !== undefined &&
      other.groupId === group.groupId &&
      other.addresses.length === group.addresses.length &&
      other.addresses.every((address, j) => address === group.addresses[j])
    );
  });
}

/** A one-line description for logs and rejection messages: "epoch 1, 128 vnodes, g1=a|b, g2=c". */
export function describeSeed(seed: DirectorySeed): string {
  const groups = canonicalGroups(seed.groups).map((group) => `${group.groupId}=${group.addresses.join('|')}`);
  return `epoch ${seed.ringEpoch}, ${seed.vnodes} vnodes, ${groups.join(', ')}`;
}
