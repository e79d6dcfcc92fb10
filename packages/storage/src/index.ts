export { WriteAheadLog, WalCorruptionError, DEFAULT_MAX_RECORD_BYTES, DEFAULT_SEGMENT_BYTES } from './wal.js';
export type { WalOptions, WalPosition, WalRecord, WalOpenResult, WalStats } from './wal.js';
export { writeSnapshotAtomic, readSnapshot, SnapshotCorruptionError, type SnapshotData } from './snapshot.js';
export { DirectoryInUseError, LOCK_FILE_NAME } from './dir-lock.js';
