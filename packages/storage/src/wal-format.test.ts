import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FRAME_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  decodeSegmentHeader,
  encodeFrameHeader,
  encodeSegmentHeader,
  findValidFrameAfter,
  frameCrc,
  newSegmentSalt,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
} from './wal-format.js';
import { nonZeroBytes, randomBytesSeeded } from './testing.js';

const SALT = 0x5eed1234;

/** A segment image holding `payloads`, and the offset of each record. */
function buildSegment(segment: number, payloads: Buffer[], salt = SALT): { bytes: Buffer; offsets: number[] } {
  const parts = [encodeSegmentHeader({ segment, salt })];
  const offsets: number[] = [];
  let offset = SEGMENT_HEADER_BYTES;
  for (const payload of payloads) {
    offsets.push(offset);
    parts.push(encodeFrameHeader(salt, payload), payload);
    offset += FRAME_HEADER_BYTES + payload.length;
  }
  return { bytes: Buffer.concat(parts), offsets };
}

function payloads(count: number, size: number, seed: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => nonZeroBytes(size, seed + i));
}

describe('segment file names', () => {
  it('are 16 zero-padded digits and parse back; other names are not segments', () => {
    assert.equal(segmentFileName(42), '0000000000000042.wal');
    assert.equal(parseSegmentFileName('0000000000000042.wal'), 42);
    assert.equal(parseSegmentFileName('0000000000000042.wal.tmp'), undefined);
    assert.equal(parseSegmentFileName('42.wal'), undefined);
    assert.equal(parseSegmentFileName('snapshot'), undefined);
  });
});

describe('segment header', () => {
  it('round-trips and is rejected when damaged or misnamed', () => {
    const bytes = encodeSegmentHeader({ segment: 7, salt: SALT });
    assert.equal(bytes.length, SEGMENT_HEADER_BYTES);
    assert.deepEqual(decodeSegmentHeader(bytes, 7), { header: { segment: 7, salt: SALT } });

    const misnamed = decodeSegmentHeader(bytes, 8);
    assert.ok('problem' in misnamed && /file name says 8/.test(misnamed.problem.reason));

    const badMagic = Buffer.from(bytes);
    badMagic[0] = 0x58;
    const magicResult = decodeSegmentHeader(badMagic, 7);
    assert.ok('problem' in magicResult && /magic/.test(magicResult.problem.reason));

    for (let i = 8; i < SEGMENT_HEADER_BYTES; i++) {
      const flipped = Buffer.from(bytes);
      flipped[i] = (flipped[i] ?? 0) ^ 0x01;
      assert.ok('problem' in decodeSegmentHeader(flipped, 7), `flip at header byte ${i} must be detected`);
    }
    const short = decodeSegmentHeader(bytes.subarray(0, 10), 7);
    assert.ok('problem' in short && /shorter/.test(short.problem.reason));
  });

  it('draws salts under which zero-filled space is never a valid empty record', () => {
    for (let i = 0; i < 100; i++) {
      const salt = newSegmentSalt();
      assert.notEqual(frameCrc(salt, Buffer.alloc(0)), 0);
    }
  });
});

describe('scanSegment', () => {
  it('reads every record of a clean segment, including empty ones', () => {
    const data = [Buffer.from('alpha'), Buffer.alloc(0), Buffer.from('gamma')];
    const { bytes, offsets } = buildSegment(3, data);
    const scan = scanSegment(bytes, 3, false);
    assert.equal(scan.kind, 'clean');
    assert.deepEqual(
      scan.records.map((r) => [r.offset, r.data.toString()]),
      data.map((d, i) => [offsets[i], d.toString()]),
    );
  });

  it('treats a long zero-filled tail after the records as torn', () => {
    const { bytes } = buildSegment(0, payloads(3, 100, 10));
    const scan = scanSegment(Buffer.concat([bytes, Buffer.alloc(1 << 20)]), 0, true);
    assert.equal(scan.kind, 'torn');
    assert.equal(scan.records.length, 3);
    assert.equal(scan.kind === 'torn' && scan.validEnd, bytes.length);
  });

  it('treats a large tail of random garbage as torn without quadratic work', () => {
    const { bytes } = buildSegment(0, payloads(2, 100, 20));
    const scan = scanSegment(Buffer.concat([bytes, randomBytesSeeded(1 << 20, 21)]), 0, true);
    assert.equal(scan.kind, 'torn');
    assert.equal(scan.records.length, 2);
  });

  it('treats a large last record cut short as torn', () => {
    const { bytes, offsets } = buildSegment(0, [...payloads(2, 100, 30), randomBytesSeeded(200_000, 31)]);
    const lastStart = offsets[2] ?? 0;
    for (const cut of [lastStart + 3, lastStart + 8, lastStart + 5000, bytes.length - 1]) {
      const scan = scanSegment(bytes.subarray(0, cut), 0, true);
      assert.equal(scan.kind, 'torn', `cut at ${cut}`);
      assert.equal(scan.kind === 'torn' && scan.validEnd, lastStart);
    }
  });

  it('calls any damage in a sealed segment corruption, even a cut-off last record', () => {
    const { bytes, offsets } = buildSegment(0, payloads(3, 100, 40));
    const scan = scanSegment(bytes.subarray(0, bytes.length - 1), 0, false);
    assert.equal(scan.kind, 'corrupt');
    assert.equal(scan.problem.offset, offsets[2]);
    assert.match(scan.problem.reason, /sealed segment/);
  });

  it('calls a damaged length field corruption when valid records follow, wherever the length points', () => {
    const { bytes, offsets } = buildSegment(0, payloads(4, 100, 50));
    const victim = offsets[1] ?? 0;
    // Past the end of the file, inside the next record, and just short of the true length.
    for (const length of [0x7fffffff, 150, 99, 0]) {
      const damaged = Buffer.from(bytes);
      damaged.writeUInt32LE(length, victim);
      const scan = scanSegment(damaged, 0, true);
      assert.equal(scan.kind, 'corrupt', `length ${length}`);
      assert.equal(scan.problem.offset, victim);
      assert.equal(scan.records.length, 1);
    }
  });

  it('finds the valid record after a damaged one even when it is long (range checksum path)', () => {
    const big = randomBytesSeeded(50_000, 60);
    const { bytes, offsets } = buildSegment(0, [big, big, Buffer.from('tail')]);
    const damaged = Buffer.from(bytes);
    damaged.writeUInt32LE(0x00ffffff, offsets[0] ?? 0);
    const scan = scanSegment(damaged, 0, true);
    assert.equal(scan.kind, 'corrupt');
    assert.match(scan.problem.reason, new RegExp(`valid record follows at offset ${offsets[1]}`));
  });

  it('does not take a record from another segment (different salt) for a valid one', () => {
    const { bytes } = buildSegment(0, payloads(2, 100, 70));
    const foreign = buildSegment(0, [Buffer.from('from another segment')], SALT ^ 1).bytes.subarray(SEGMENT_HEADER_BYTES);
    const scan = scanSegment(Buffer.concat([bytes, Buffer.from([1, 2, 3]), foreign]), 0, true);
    assert.equal(scan.kind, 'torn');
    assert.equal(scan.records.length, 2);
  });
});

describe('findValidFrameAfter', () => {
  it('finds a short and a long record at an arbitrary byte offset in garbage', () => {
    for (const size of [10, 5000]) {
      const garbage = randomBytesSeeded(3001, 80 + size);
      const payload = randomBytesSeeded(size, 90);
      const frame = Buffer.concat([encodeFrameHeader(SALT, payload), payload]);
      const bytes = Buffer.concat([garbage, frame, randomBytesSeeded(17, 91)]);
      assert.equal(findValidFrameAfter(bytes, 0, SALT), garbage.length, `payload of ${size} bytes`);
      assert.equal(findValidFrameAfter(bytes, garbage.length, SALT), undefined);
    }
  });
});
