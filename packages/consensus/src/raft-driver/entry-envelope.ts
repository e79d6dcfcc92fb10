// What the driver puts in the data of a normal log entry. The core replicates bytes; the driver
// needs the log to carry one thing besides state-machine commands: where a member added to the
// group listens. Membership itself is the core's business (conf_change entries list member ids
// only), and no member may learn it from anywhere but the log — but a leader elected later must
// still reach a learner it never heard from, so the learner's address is replicated too.
//
// NORMAL ENTRY DATA = tag u8, then:
//   0 COMMAND         the state machine's command, as given to propose()
//   1 MEMBER_ADDRESS  UTF-8 JSON {"node": id, "address": "host:port"}
// changeMembership(add_learner) appends a MEMBER_ADDRESS entry right before the conf_change entry,
// so by Log Matching every log that holds the change holds the address too. Empty data is an entry
// with nothing to apply. Any other tag is a broken invariant (data of a newer, unknown format) and
// throws rather than feeding the state machine bytes it would misread.

import type { NodeId } from '../raft/types.js';

const TAG_COMMAND = 0;
const TAG_MEMBER_ADDRESS = 1;

export type NormalEntryContent =
  | { kind: 'command'; command: Uint8Array }
  | { kind: 'member_address'; node: NodeId; address: string }
  | { kind: 'empty' };

export function encodeCommandEntry(command: Uint8Array): Buffer {
  const data = Buffer.allocUnsafe(1 + command.byteLength);
  data[0] = TAG_COMMAND;
  data.set(command, 1);
  return data;
}

export function encodeMemberAddressEntry(node: NodeId, address: string): Buffer {
  return Buffer.concat([Buffer.from([TAG_MEMBER_ADDRESS]), Buffer.from(JSON.stringify({ node, address }), 'utf8')]);
}

export function decodeNormalEntry(data: Uint8Array, index: number): NormalEntryContent {
  if (data.byteLength === 0) return { kind: 'empty' };
  const body = data.subarray(1);
  switch (data[0]) {
    case TAG_COMMAND:
      return { kind: 'command', command: body };
    case TAG_MEMBER_ADDRESS: {
      const parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as {
        node?: unknown;
        address?: unknown;
      } | null;
      if (typeof parsed?.node !== 'string' || typeof parsed.address !== 'string') {
        throw new Error(`log entry ${index}: malformed member address`);
      }
      return { kind: 'member_address', node: parsed.node, address: parsed.address };
    }
    default:
      throw new Error(`log entry ${index}: unknown entry tag ${String(data[0])} (written by a newer version?)`);
  }
}
