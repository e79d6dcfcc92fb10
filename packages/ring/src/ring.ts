import { checkGroupId, compareGroupIds, validateRingConfig, type RingConfig } from './config.js';
import { MAX_TOKEN, TOKEN_SPACE, keyToken, vnodeToken } from './token.js';

/** An inclusive range of tokens, first <= last. */
export interface TokenRange {
  first: bigint;
  last: bigint;
}

interface VirtualNode {
  token: bigint;
  groupId: string;
}

/**
 * A consistent-hash ring with virtual nodes over shard groups (Karger et al. 1997; the vnode scheme
 * of Dynamo §4.2). A key belongs to the group of the first virtual node whose token is >= the key's
 * token, wrapping around to the lowest token. Immutable: a membership change builds a new ring at
 * epoch + 1, so a router can hold on to the ring it routed with.
 */
export class HashRing {
  /** The validated config, frozen, with groups in canonical order (compareGroupIds). */
  readonly config: RingConfig;
  /** Virtual node tokens in ascending order; ties ordered by group id. */
  private readonly tokens: readonly bigint[];
  /** owners[i] is the group of the virtual node at tokens[i]. */
  private readonly owners: readonly string[];

  constructor(config: RingConfig) {
    this.config = validateRingConfig(config);
    const vnodes = buildVirtualNodes(this.config);
    this.tokens = Object.freeze(vnodes.map((vnode) => vnode.token));
    this.owners = Object.freeze(vnodes.map((vnode) => vnode.groupId));
  }

  get epoch(): number {
    return this.config.epoch;
  }

  /** The group ids, in canonical order (by UTF-8 bytes). */
  get groups(): readonly string[] {
    return this.config.groups;
  }

  get vnodesPerGroup(): number {
    return this.config.vnodesPerGroup;
  }

  /** The group that owns `key`. Runs on every request: one SHA-256 and a binary search. */
  ownerOf(key: string): string {
    return this.ownerAt(this.successorIndex(keyToken(key)));
  }

  /** The group that owns `token` (for callers that already hold a key's token). */
  ownerOfToken(token: bigint): string {
    if (token < 0n || token > MAX_TOKEN) {
      throw new Error(`token must be in [0, 2^64), got ${token}`);
    }
    return this.ownerAt(this.successorIndex(token));
  }

  /**
   * How many of the 2^64 tokens each group owns, exactly; the counts sum to 2^64.
   * The first virtual node also owns the wrapped range above the last token.
   */
  ownedTokens(): Map<string, bigint> {
    const counts = new Map<string, bigint>(this.groups.map((groupId) => [groupId, 0n]));
    const last = this.tokens.length - 1;
    for (let i = 0; i <= last; i++) {
      const token = this.tokens[i]!;
      const previous = i === 0 ? this.tokens[last]! - TOKEN_SPACE : this.tokens[i - 1]!;
      const groupId = this.ownerAt(i);
      counts.set(groupId, counts.get(groupId)! + (token - previous));
    }
    return counts;
  }

  /** Fraction of the hash space each group owns (sums to 1, up to float rounding). */
  shares(): Map<string, number> {
    const shares = new Map<string, number>();
    for (const [groupId, count] of this.ownedTokens()) {
      shares.set(groupId, Number(count) / Number(TOKEN_SPACE));
    }
    return shares;
  }

  /**
   * The token ranges `groupId` owns, ascending, inclusive, adjacent ranges merged. The wrapped range
   * is reported as two pieces, [lastToken + 1, 2^64 - 1] and [0, firstToken], so no range wraps.
   * Together the ranges of all groups partition [0, 2^64).
   */
  rangesOf(groupId: string): TokenRange[] {
    if (!this.groups.includes(groupId)) {
      throw new Error(`group ${JSON.stringify(groupId)} is not on the ring (epoch ${this.epoch})`);
    }
    const ranges: TokenRange[] = [];
    const add = (first: bigint, last: bigint): void => {
      if (first > last) return; // an empty range: equal tokens, or the last token is 2^64 - 1
      const previous = ranges[ranges.length - 1];
      if (previous !== undefined && previous.last + 1n === first) previous.last = last;
      else ranges.push({ first, last });
    };
    const lastIndex = this.tokens.length - 1;
    for (let i = 0; i <= lastIndex; i++) {
      if (this.ownerAt(i) !== groupId) continue;
      const first = i === 0 ? 0n : this.tokens[i - 1]! + 1n;
      add(first, this.tokens[i]!);
    }
    if (this.ownerAt(0) === groupId) add(this.tokens[lastIndex]! + 1n, MAX_TOKEN);
    return ranges;
  }

  /** A ring with one more group, at epoch + 1. */
  withGroup(groupId: string): HashRing {
    checkGroupId(groupId, 'new group id');
    if (this.groups.includes(groupId)) {
      throw new Error(`group ${JSON.stringify(groupId)} is already on the ring (epoch ${this.epoch})`);
    }
    return new HashRing({ ...this.config, epoch: this.epoch + 1, groups: [...this.groups, groupId] });
  }

  /** A ring without `groupId`, at epoch + 1. */
  withoutGroup(groupId: string): HashRing {
    if (!this.groups.includes(groupId)) {
      throw new Error(`group ${JSON.stringify(groupId)} is not on the ring (epoch ${this.epoch})`);
    }
    if (this.groups.length === 1) {
      throw new Error(`cannot remove ${JSON.stringify(groupId)}: it is the last group, and its keys would have no owner`);
    }
    return new HashRing({
      ...this.config,
      epoch: this.epoch + 1,
      groups: this.groups.filter((other) => other !== groupId),
    });
  }

  /** Index of the first virtual node with token >= `token`, wrapping to 0 past the last one. */
  private successorIndex(token: bigint): number {
    const tokens = this.tokens;
    let low = 0;
    let high = tokens.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (tokens[middle]! < token) low = middle + 1;
      else high = middle;
    }
    return low === tokens.length ? 0 : low;
  }

  private ownerAt(index: number): string {
    const owner = this.owners[index];
    if (owner === undefined) throw new Error(`ring invariant broken: no virtual node at index ${index}`);
    return owner;
  }
}

/**
 * Every group's virtual nodes, sorted by token, equal tokens by group id (compareGroupIds).
 * With equal tokens the first in this order owns the keys at that token and the later ones own
 * nothing; the tie-break only has to be the same in every client, and bytewise order is the one
 * every language has.
 */
function buildVirtualNodes(config: RingConfig): VirtualNode[] {
  const vnodes: VirtualNode[] = [];
  for (const groupId of config.groups) {
    for (let index = 0; index < config.vnodesPerGroup; index++) {
      vnodes.push({ token: vnodeToken(groupId, index), groupId });
    }
  }
  // Groups are already in canonical order and Array.prototype.sort is stable, so equal tokens keep
  // that order; the explicit tie-break states the rule rather than relying on it.
  vnodes.sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : compareGroupIds(a.groupId, b.groupId)));
  return vnodes;
}
