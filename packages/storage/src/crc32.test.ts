import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { RangeCrc, crc32Combine } from './crc32.js';
import { randomBytesSeeded, seededRandom } from './testing.js';

describe('crc32Combine', () => {
  it('equals the CRC-32 of the concatenation for lengths across the bit patterns of the shift', () => {
    const data = randomBytesSeeded(70_000, 1);
    for (const [split, end] of [
      [0, 0],
      [0, 10],
      [10, 10],
      [1, 2],
      [3, 11],
      [100, 1124],
      [5, 65_541],
      [1, 70_000],
    ] as const) {
      const a = data.subarray(0, split);
      const b = data.subarray(split, end);
      assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(data.subarray(0, end)), `split ${split}, end ${end}`);
    }
  });
});

describe('RangeCrc', () => {
  it('gives the CRC-32 of arbitrary ranges of its region, on and off stride boundaries', () => {
    const data = randomBytesSeeded(20_000, 2);
    const regionStart = 37;
    const ranges = new RangeCrc(data, regionStart, data.length, 64);
    const next = seededRandom(3);
    const cases: [number, number][] = [
      [regionStart, regionStart],
      [regionStart, data.length],
      [regionStart + 64, regionStart + 128],
      [data.length, data.length],
    ];
    for (let i = 0; i < 300; i++) {
      const a = regionStart + Math.floor(next() * (data.length - regionStart + 1));
      const b = a + Math.floor(next() * (data.length - a + 1));
      cases.push([a, b]);
    }
    for (const [start, end] of cases) {
      assert.equal(ranges.crc(start, end), crc32(data.subarray(start, end)), `range [${start}, ${end})`);
    }
  });
});
