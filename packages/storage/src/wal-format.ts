// The WAL's on-disk format: encoding, decoding and the recovery rule, with no I/O.
// The format itself is specified at the top of wal.ts; keep the two in step.

import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { RangeCrc, crc32Combine } from './crc32.js';

/** "CONCWAL" and a NUL: the first bytes of every segment file. */
export const SEGMENT_MAGIC = Buffer.from('CONCWAL\0', 'latin1');
export const SEGMENT_FORMAT_VERSION = 1;
/** magic (8) + version (4) + salt (4) + segment number (8) + header CRC (4). */
export const SEGMENT_HEADER_BYTES = 28;
/** length (4) + CRC (4) before every payload. */
export const FRAME_HEADER_BYTES = 8;

const SEGMENT_NAME = /^(\d{16})\.wal$/;
/** Where a segment's header is prepared before it is renamed into place (see createSegment in wal.ts). */
export const SEGMENT_TEMP_SUFFIX = '.tmp';

export function segmentFileName(segment: number): string {
  return `${String(segment).padStart(16, '0')}.wal`;
}

/** The segment number of a segment file name, or undefined for any other file. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  if (match?.[1] === undefined) return undefined;
  const segment = Number(match[1]);
  return Number.isSafeInteger(segment) ? segment : undefined;
}

export interface SegmentHeader {
  segment: number;
  salt: number;
}

/**
 * A fresh random salt for a new segment. It is drawn again in the (one in four billion) case where
 * a zero-length record would checksum to 0, so that zero-filled space can never read as a record.
 */
export function newSegmentSalt(): number {
  for (;;) {
    const salt = randomBytes(4).readUInt32LE(0);
    if (frameCrc(salt, Buffer.alloc(0)) !== 0) return salt;
  }
}

export function encodeSegmentHeader(header: SegmentHeader): Buffer {
  const bytes = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(bytes, 0);
  bytes.writeUInt32LE(SEGMENT_FORMAT_VERSION, 8);
  bytes.writeUInt32LE(header.salt, 12);
  bytes.writeBigUInt64LE(BigInt(header.segment), 16);
  bytes.writeUInt32LE(crc32(bytes.subarray(0, 24)), 24);
  return bytes;
}

/** Why a stretch of a segment is not a valid record or header. */
export interface FormatProblem {
  offset: number;
  reason: string;
}

/** Every check a segment header must pass: all of them are corruption, never a torn write, because
 * headers are written to a temporary file and renamed into place only once durable. */
export function decodeSegmentHeader(
  bytes: Buffer,
  expectedSegment: number,
): { header: SegmentHeader } | { problem: FormatProblem } {
  const fail = (reason: string) => ({ problem: { offset: 0, reason } });
  if (bytes.length < SEGMENT_HEADER_BYTES) {
    return fail(`the file is ${bytes.length} bytes, shorter than the ${SEGMENT_HEADER_BYTES}-byte segment header`);
  }
  if (!bytes.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) return fail('bad magic, not a WAL segment');
  if (bytes.readUInt32LE(24) !== crc32(bytes.subarray(0, 24))) return fail('segment header checksum mismatch');
  const version = bytes.readUInt32LE(8);
  if (version !== SEGMENT_FORMAT_VERSION) {
    return fail(`unsupported segment format version ${version} (this build reads version ${SEGMENT_FORMAT_VERSION})`);
  }
  const segment = Number(bytes.readBigUInt64LE(16));
  if (segment !== expectedSegment) {
    return fail(`the header says segment ${segment} but the file name says ${expectedSegment}`);
  }
  return { header: { segment, salt: bytes.readUInt32LE(12) } };
}

/** CRC-32 of salt ‖ length ‖ payload, all little-endian: the checksum stored in a frame. */
export function frameCrc(salt: number, payload: Uint8Array): number {
  return crc32(payload, frameCrcPrefix(salt, payload.length));
}

/** Reused by frameCrcPrefix: recovery checksums millions of candidate frames in a damaged tail. */
const prefixScratch = Buffer.alloc(8);

/** CRC-32 of salt ‖ length, the part of a frame's checksum that precedes the payload. */
function frameCrcPrefix(salt: number, length: number): number {
  prefixScratch.writeUInt32LE(salt, 0);
  prefixScratch.writeUInt32LE(length, 4);
  return crc32(prefixScratch);
}

/** The 8 bytes that precede `payload` on disk. */
export function encodeFrameHeader(salt: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt32LE(frameCrc(salt, payload), 4);
  return header;
}

/** The frame at `offset`: its payload's byte count, or why there is no valid frame there. */
function checkFrameAt(bytes: Buffer, offset: number, salt: number): { length: number } | { reason: string } {
  const available = bytes.length - offset;
  if (available < FRAME_HEADER_BYTES) {
    return { reason: `incomplete record header (${available} of ${FRAME_HEADER_BYTES} bytes)` };
  }
  const length = bytes.readUInt32LE(offset);
  if (length > available - FRAME_HEADER_BYTES) {
    const following = available - FRAME_HEADER_BYTES;
    return { reason: `record length ${length} runs past the end of the file (${following} bytes follow the header)` };
  }
  const start = offset + FRAME_HEADER_BYTES;
  if (bytes.readUInt32LE(offset + 4) !== frameCrc(salt, bytes.subarray(start, start + length))) {
    return { reason: 'record checksum mismatch' };
  }
  return { length };
}

/** Candidates at most this long are checksummed directly; longer ones through RangeCrc. */
const DIRECT_CRC_MAX_BYTES = 1024;

/**
 * The offset of the first valid frame that starts after `badOffset`, or undefined if there is none.
 *
 * A damaged length field hides where the next record begins, so every byte offset is a candidate.
 * Most candidates fail the length check at once; the rest need a checksum of up to the whole rest of
 * the file, which RangeCrc answers without rereading, keeping the search linear in the file size.
 * A false match needs a 32-bit checksum collision under this segment's random salt.
 */
export function findValidFrameAfter(bytes: Buffer, badOffset: number, salt: number): number | undefined {
  // No frame can start inside a zero-filled tail: it would read as an empty record with checksum 0,
  // which newSegmentSalt rules out. Skipping it keeps a long run of zeros (a common torn tail) cheap.
  let scanEnd = bytes.length;
  while (scanEnd > badOffset && bytes[scanEnd - 1] === 0) scanEnd--;

  let ranges: RangeCrc | undefined;
  for (let offset = badOffset + 1; offset < scanEnd && offset + FRAME_HEADER_BYTES <= bytes.length; offset++) {
    const length = bytes.readUInt32LE(offset);
    const start = offset + FRAME_HEADER_BYTES;
    if (length > bytes.length - start) continue;
    let computed: number;
    if (length <= DIRECT_CRC_MAX_BYTES) {
      computed = frameCrc(salt, bytes.subarray(start, start + length));
    } else {
      ranges ??= new RangeCrc(bytes, badOffset, bytes.length);
      computed = crc32Combine(frameCrcPrefix(salt, length), ranges.crc(start, start + length), length);
    }
    if (computed === bytes.readUInt32LE(offset + 4)) return offset;
  }
  return undefined;
}

/** A record found in a segment; `data` is a view into the scanned buffer. */
export interface ScannedRecord {
  offset: number;
  data: Buffer;
}

export type SegmentScan =
  /** Every byte after the header belongs to a valid record. */
  | { kind: 'clean'; header: SegmentHeader; records: ScannedRecord[] }
  /** Valid records, then a torn tail from `validEnd` to the end of the file. */
  | { kind: 'torn'; header: SegmentHeader; records: ScannedRecord[]; validEnd: number; problem: FormatProblem }
  /** Damage that a crash cannot explain; records before it are valid but the log is not. */
  | { kind: 'corrupt'; records: ScannedRecord[]; problem: FormatProblem };

/**
 * Reads every record of one segment and classifies any damage.
 *
 * The rule (the "why" is in the recovery section at the top of wal.ts): damage is a torn tail only
 * when `isLastSegment` and no valid record starts anywhere after the first bad byte offset; anything
 * else is corruption.
 */
export function scanSegment(bytes: Buffer, expectedSegment: number, isLastSegment: boolean): SegmentScan {
  const decoded = decodeSegmentHeader(bytes, expectedSegment);
  if ('problem' in decoded) return { kind: 'corrupt', records: [], problem: decoded.problem };
  const { header } = decoded;
  const { salt } = header;

  const records: ScannedRecord[] = [];
  let offset = SEGMENT_HEADER_BYTES;
  while (offset < bytes.length) {
    const frame = checkFrameAt(bytes, offset, salt);
    if ('reason' in frame) {
      const problem = { offset, reason: frame.reason };
      if (!isLastSegment) {
        return {
          kind: 'corrupt',
          records,
          problem: { offset, reason: `${frame.reason} in a sealed segment (only the last segment can have a torn tail)` },
        };
      }
      const validAfter = findValidFrameAfter(bytes, offset, salt);
      if (validAfter !== undefined) {
        return {
          kind: 'corrupt',
          records,
          problem: { offset, reason: `${frame.reason}, yet a valid record follows at offset ${validAfter}` },
        };
      }
      return { kind: 'torn', header, records, validEnd: offset, problem };
    }
    const start = offset + FRAME_HEADER_BYTES;
    records.push({ offset, data: bytes.subarray(start, start + frame.length) });
    offset = start + frame.length;
  }
  return { kind: 'clean', header, records };
}
