// Commands of the meta state machine and their encoding in the meta group's log.
//
// ENCODING. A command is one JSON object in UTF-8, its kind in "type":
//
//   {"type":"bootstrap","ringEpoch":1,"vnodes":128,"groups":[{"groupId":"g1","addresses":["h:7101"]}]}
//   {"type":"set_group_addresses","groupId":"g1","addresses":["h:7101","h2:7101"]}
//   {"type":"add_group","groupId":"g4","addresses":["h:7104"]}
//   {"type":"remove_group","groupId":"g4"}
//
// JSON rather than protobuf: these commands are few (one per change of the cluster's shape, never
// one per client request), the log and snapshots stay readable with a text tool during an
// incident, and the format needs no generated code. Only this module writes them. A log entry
// whose JSON does not parse, or whose type this version does not know, was written by a newer
// version (or is damage the WAL checksums missed): applying it as a no-op would let replicas of
// different versions diverge, so decoding throws and the member stops (as the shard's state
// machine does with an unknown command).

import type { ShardGroupEntry } from './directory-state.js';

export interface BootstrapCommand {
  type: 'bootstrap';
  ringEpoch: number;
  vnodes: number;
  groups: ShardGroupEntry[];
}

/** Replaces a group's replica list, e.g. to swap a dead replica's address for its replacement. */
export interface SetGroupAddressesCommand {
  type: 'set_group_addresses';
  groupId: string;
  addresses: string[];
}

/** Puts a new group on the ring at epoch + 1. Moving its keys to it is the caller's business. */
export interface AddGroupCommand {
  type: 'add_group';
  groupId: string;
  addresses: string[];
}

/** Takes a group off the ring at epoch + 1. */
export interface RemoveGroupCommand {
  type: 'remove_group';
  groupId: string;
}

export type MetaCommand = BootstrapCommand | SetGroupAddressesCommand | AddGroupCommand | RemoveGroupCommand;

/**
 * What applying a command did. `unchanged` answers a bootstrap identical to the one already
 * applied (so proposing it again is harmless); `rejected` says why nothing changed.
 */
export type MetaResult =
  | { kind: 'applied'; ringEpoch: number }
  | { kind: 'unchanged'; ringEpoch: number; reason: string }
  | { kind: 'rejected'; reason: string };

/** The command's log entry bytes. Fields are written in a fixed order, so equal commands encode equally. */
export function encodeMetaCommand(command: MetaCommand): Uint8Array {
  let canonical: MetaCommand;
  switch (command.type) {
    case 'bootstrap':
      canonical = {
        type: command.type,
        ringEpoch: command.ringEpoch,
        vnodes: command.vnodes,
        groups: command.groups.map((group) => ({ groupId: group.groupId, addresses: [...group.addresses] })),
      };
      break;
    case 'set_group_addresses':
    case 'add_group':
      canonical = { type: command.type, groupId: command.groupId, addresses: [...command.addresses] };
      break;
    case 'remove_group':
      canonical = { type: command.type, groupId: command.groupId };
      break;
  }
  return Buffer.from(JSON.stringify(canonical), 'utf8');
}

/** Parses a log entry; throws (naming the index) when it is not a command this version writes. */
export function decodeMetaCommand(bytes: Uint8Array, index: number): MetaCommand {
  const fail = (what: string): never => {
    throw new Error(`meta command at log index ${index}: ${what}; it was written by a newer version, or the log is damaged`);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return fail('not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('not a JSON object');
  const record = parsed as Record<string, unknown>;
  const int = (field: string): number => {
    const value = record[field];
    return typeof value === 'number' && Number.isSafeInteger(value) ? value : fail(`${field} is not an integer`);
  };
  const text = (value: unknown, field: string): string => (typeof value === 'string' ? value : fail(`${field} is not a string`));
  const texts = (value: unknown, field: string): string[] =>
    Array.isArray(value) ? value.map((item, i) => text(item, `${field}[${i}]`)) : fail(`${field} is not a list`);
  switch (record['type']) {
    case 'bootstrap': {
      const groups = record['groups'];
      if (!Array.isArray(groups)) return fail('groups is not a list');
      return {
        type: 'bootstrap',
        ringEpoch: int('ringEpoch'),
        vnodes: int('vnodes'),
        groups: groups.map((group: unknown, i) => {
          if (typeof group !== 'object' || group === null) return fail(`groups[${i}] is not an object`);
          const entry = group as Record<string, unknown>;
          return { groupId: text(entry['groupId'], `groups[${i}].groupId`), addresses: texts(entry['addresses'], `groups[${i}].addresses`) };
        }),
      };
    }
    case 'set_group_addresses':
    case 'add_group':
      return { type: record['type'], groupId: text(record['groupId'], 'groupId'), addresses: texts(record['addresses'], 'addresses') };
    case 'remove_group':
      return { type: 'remove_group', groupId: text(record['groupId'], 'groupId') };
    default:
      return fail(`unknown type ${JSON.stringify(record['type'])}`);
  }
}
