import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { MAX_TOKEN, RING_HASH, TOKEN_SPACE, keyToken, vnodeToken } from './token.js';

// The cross-language contract (docs/ring-hash.md). Expected values were computed independently with
// Python's hashlib: int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:8], "big").
const KEY_VECTORS: ReadonlyArray<readonly [label: string, key: string, token: bigint]> = [
  ['empty key', '', 0xe3b0c44298fc1c14n],
  ['"a"', 'a', 0xca978112ca1bbdcan],
  ['"user:42"', 'user:42', 0xea3fd43be1e57d62n],
  ['Cyrillic "ключ" (8 UTF-8 bytes)', 'ключ', 0x1de36a32af798da0n],
  ['astral "🔑" (4 UTF-8 bytes, a UTF-16 surrogate pair)', '🔑', 0xc5c75521402748f5n],
  ['4096 bytes of "x"', 'x'.repeat(4096), 0xa2e659dacb4691e8n],
];

const VNODE_VECTORS: ReadonlyArray<readonly [groupId: string, index: number, token: bigint]> = [
  ['g1', 0, 0xb6899992fa9ed6bbn],
  ['g1', 1, 0xf74e4c7d9f712d49n],
  ['g1', 127, 0x4ba13dbfb3020df4n],
  ['g2', 0, 0x1565895df924c11an],
  ['g3', 0, 0xc916bd6e6eccfbben],
  ['шард-1', 0, 0x15aa00b1ebc2733bn],
];

describe('keyToken: first 8 bytes of SHA-256(UTF-8 key), big-endian unsigned', () => {
  for (const [label, key, expected] of KEY_VECTORS) {
    it(`matches the published vector for ${label}`, () => {
      assert.equal(keyToken(key), expected);
    });
  }

  it('hashes UTF-8 bytes, not UTF-16 code units', () => {
    // 2048 two-byte characters: 4096 UTF-8 bytes but a JavaScript length of 2048.
    const key = 'é'.repeat(2048);
    const utf8Digest = createHash('sha256').update(Buffer.from(key, 'utf8')).digest();
    assert.equal(keyToken(key), utf8Digest.readBigUInt64BE(0));
    assert.notEqual(keyToken(key), createHash('sha256').update(Buffer.from(key, 'utf16le')).digest().readBigUInt64BE(0));
  });

  it('agrees with createHash, the streaming API, over many keys', () => {
    for (let i = 0; i < 1000; i++) {
      const key = `key-${i}-${'ü'.repeat(i % 7)}`;
      assert.equal(keyToken(key), createHash('sha256').update(key, 'utf8').digest().readBigUInt64BE(0), key);
    }
  });

  it('always lies in [0, 2^64)', () => {
    for (let i = 0; i < 1000; i++) {
      const token = keyToken(`k${i}`);
      assert.ok(token >= 0n && token <= MAX_TOKEN && token < TOKEN_SPACE);
    }
  });

  it('is published under the name sha256-be64', () => {
    assert.equal(RING_HASH, 'sha256-be64');
  });
});

describe('vnodeToken: keyToken of "<group>#<index>"', () => {
  for (const [groupId, index, expected] of VNODE_VECTORS) {
    it(`matches the published vector for ${groupId}#${index}`, () => {
      assert.equal(vnodeToken(groupId, index), expected);
    });
  }

  it('is the token of the key "<group>#<index>", so clients can reuse keyToken', () => {
    assert.equal(vnodeToken('g7', 42), keyToken('g7#42'));
  });

  it('refuses indexes that have no single decimal spelling', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      assert.throws(() => vnodeToken('g1', bad), /vnode index must be a non-negative integer/);
    }
  });
});
