// The state the coordinators replicate in their meta group: today the ring and the shard-group
// directory; transaction records and MapReduce jobs join it later. Deterministic: apply depends
// only on the state and the command (commands.ts), so every coordinator reaches the same state.
// No clocks, no I/O; the driver (RaftGroup) calls apply once per committed entry, in log order.
//
// SNAPSHOT. One JSON object in UTF-8, readable with a text tool like the commands:
//
//   {"format":1,"directory":null}
//   {"format":1,"directory":{"ringEpoch":1,"vnodes":128,"changedAt":3,"groups":[{"groupId":"g1","addresses":["h:7101"]}]}}
//
// "format" changes whenever the layout does; a member refuses (throws on) a format it does not know
// rather than restoring part of a state.

import type { StateMachine } from '@concord/consensus';
import { decodeMetaCommand, type AddGroupCommand, type BootstrapCommand, type MetaCommand, type MetaResult, type RemoveGroupCommand, type SetGroupAddressesCommand } from './commands.js';
import {
  addressOwners,
  addressesProblem,
  canonicalGroups,
  describeSeed,
  directoryFromSeed,
  groupIdProblem,
  sameSeed,
  seedOf,
  seedProblem,
  type DirectoryState,
} from './directory-state.js';

const SNAPSHOT_FORMAT = 1;

interface SnapshotDirectory {
  ringEpoch: number;
  vnodes: number;
  changedAt: number;
  groups: { groupId: string; addresses: string[] }[];
}

const NOT_BOOTSTRAPPED = 'the meta group holds no ring yet (it is bootstrapped from the first leader\'s --groups)';

export class MetaStateMachine implements StateMachine<MetaResult> {
  private current: DirectoryState | undefined;

  /** The ring and shard-group directory as of the last applied entry; undefined until bootstrapped. */
  get directory(): DirectoryState | undefined {
    return this.current;
  }

  apply(command: Uint8Array, index: number): MetaResult {
    return this.applyCommand(decodeMetaCommand(command, index), index);
  }

  /** Applies an already decoded command (apply's second half; tests call it directly). */
  applyCommand(command: MetaCommand, index: number): MetaResult {
    switch (command.type) {
      case 'bootstrap':
        return this.bootstrap(command, index);
      case 'set_group_addresses':
        return this.setGroupAddresses(command, index);
      case 'add_group':
        return this.addGroup(command, index);
      case 'remove_group':
        return this.removeGroup(command, index);
    }
  }

  /**
   * The configuration seeds an empty meta group exactly once. Afterwards the replicated directory
   * wins: the same bootstrap again changes nothing (so a retried or repeated proposal is harmless),
   * a different one is refused, since coordinators restarted with stale flags must not roll back
   * address changes or ring epochs made since.
   */
  private bootstrap(command: BootstrapCommand, index: number): MetaResult {
    const problem = seedProblem(command);
    if (problem !== undefined) return { kind: 'rejected', reason: `bootstrap: ${problem}` };
    const current = this.current;
    if (current === undefined) {
      this.current = directoryFromSeed(command, index);
      return { kind: 'applied', ringEpoch: command.ringEpoch };
    }
    if (sameSeed(seedOf(current), command)) {
      return { kind: 'unchanged', ringEpoch: current.ring.epoch, reason: 'the meta group already holds this ring' };
    }
    return {
      kind: 'rejected',
      reason: `the meta group already holds a ring (${describeSeed(seedOf(current))}); a bootstrap with ${describeSeed(command)} changes nothing`,
    };
  }

  /** Same ring, same epoch: only where the group's replicas are reached changes. */
  private setGroupAddresses(command: SetGroupAddressesCommand, index: number): MetaResult {
    const current = this.current;
    if (current === undefined) return { kind: 'rejected', reason: NOT_BOOTSTRAPPED };
    if (!current.groups.some((group) => group.groupId === command.groupId)) {
      return { kind: 'rejected', reason: `no shard group ${JSON.stringify(command.groupId)} on the ring (epoch ${current.ring.epoch})` };
    }
    const problem = addressesProblem(command.groupId, command.addresses, addressOwners(current.groups, command.groupId));
    if (problem !== undefined) return { kind: 'rejected', reason: problem };
    const groups = current.groups.map((group) => (group.groupId === command.groupId ? { groupId: group.groupId, addresses: command.addresses } : group));
    this.current = Object.freeze({ ring: current.ring, groups: canonicalGroups(groups), changedAt: index });
    return { kind: 'applied', ringEpoch: current.ring.epoch };
  }

  private addGroup(command: AddGroupCommand, index: number): MetaResult {
    const current = this.current;
    if (current === undefined) return { kind: 'rejected', reason: NOT_BOOTSTRAPPED };
    const idProblem = groupIdProblem(command.groupId);
    if (idProblem !== undefined) return { kind: 'rejected', reason: idProblem };
    if (current.groups.some((group) => group.groupId === command.groupId)) {
      return { kind: 'rejected', reason: `group ${command.groupId} is already on the ring (epoch ${current.ring.epoch})` };
    }
    const problem = addressesProblem(command.groupId, command.addresses, addressOwners(current.groups));
    if (problem !== undefined) return { kind: 'rejected', reason: problem };
    const ring = current.ring.withGroup(command.groupId);
    this.current = Object.freeze({
      ring,
      groups: canonicalGroups([...current.groups, { groupId: command.groupId, addresses: command.addresses }]),
      changedAt: index,
    });
    return { kind: 'applied', ringEpoch: ring.epoch };
  }

  private removeGroup(command: RemoveGroupCommand, index: number): MetaResult {
    const current = this.current;
    if (current === undefined) return { kind: 'rejected', reason: NOT_BOOTSTRAPPED };
    if (!current.groups.some((group) => group.groupId === command.groupId)) {
      return { kind: 'rejected', reason: `no shard group ${JSON.stringify(command.groupId)} on the ring (epoch ${current.ring.epoch})` };
    }
    if (current.groups.length === 1) {
      return { kind: 'rejected', reason: `group ${command.groupId} is the last group on the ring; its keys would have no owner` };
    }
    const ring = current.ring.withoutGroup(command.groupId);
    this.current = Object.freeze({
      ring,
      groups: current.groups.filter((group) => group.groupId !== command.groupId),
      changedAt: index,
    });
    return { kind: 'applied', ringEpoch: ring.epoch };
  }

  snapshot(): Uint8Array {
    const current = this.current;
    const directory: SnapshotDirectory | null =
      current === undefined
        ? null
        : {
            ringEpoch: current.ring.epoch,
            vnodes: current.ring.vnodesPerGroup,
            changedAt: current.changedAt,
            groups: current.groups.map((group) => ({ groupId: group.groupId, addresses: [...group.addresses] })),
          };
    return Buffer.from(JSON.stringify({ format: SNAPSHOT_FORMAT, directory }), 'utf8');
  }

  restore(snapshot: Uint8Array): void {
    const fail = (what: string): never => {
      throw new Error(`meta snapshot: ${what}`);
    };
    let parsed: { format?: unknown; directory?: unknown };
    try {
      parsed = JSON.parse(Buffer.from(snapshot).toString('utf8')) as typeof parsed;
    } catch {
      return fail('not JSON');
    }
    if (parsed.format !== SNAPSHOT_FORMAT) fail(`format ${JSON.stringify(parsed.format)} is not one this version reads (${SNAPSHOT_FORMAT})`);
    if (parsed.directory === null) {
      this.current = undefined;
      return;
    }
    const directory = parsed.directory as Partial<SnapshotDirectory> | undefined;
    if (typeof directory !== 'object' || !Array.isArray(directory.groups)) return fail('directory is malformed');
    const seed = {
      ringEpoch: Number(directory.ringEpoch),
      vnodes: Number(directory.vnodes),
      groups: directory.groups.map((group) => ({ groupId: String(group.groupId), addresses: Array.isArray(group.addresses) ? group.addresses.map(String) : [] })),
    };
    const problem = seedProblem(seed);
    if (problem !== undefined) fail(`directory: ${problem}`);
    const changedAt = Number(directory.changedAt);
    if (!Number.isSafeInteger(changedAt) || changedAt < 0) fail('directory.changedAt is not an index');
    this.current = directoryFromSeed(seed, changedAt);
  }
}
