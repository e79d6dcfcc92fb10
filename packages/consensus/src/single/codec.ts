// On-disk encodings of the single engine. Log record: 8-byte big-endian entry index, then the
// command. Snapshot file payload: 8-byte big-endian last included index, then the state machine's
// snapshot. (The storage package adds length and CRC framing around both.)

export function encodeLogRecord(index: number, command: Uint8Array): Buffer {
  const record = Buffer.allocUnsafe(8 + command.byteLength);
  record.writeBigUInt64BE(BigInt(index), 0);
  record.set(command, 8);
  return record;
}

export function decodeLogRecord(record: Buffer): { index: number; command: Uint8Array } {
  if (record.byteLength < 8) throw new Error(`log record too short (${record.byteLength} bytes)`);
  return { index: Number(record.readBigUInt64BE(0)), command: record.subarray(8) };
}

export function encodeSnapshotFile(lastIndex: number, state: Uint8Array): Buffer {
  return encodeLogRecord(lastIndex, state);
}

export function decodeSnapshotFile(file: Buffer): { lastIndex: number; state: Uint8Array } {
  const { index, command } = decodeLogRecord(file);
  return { lastIndex: index, state: command };
}
