// @concord/lincheck: a linearizability checker for recorded histories. checker.ts describes the
// algorithm, the semantics of operations of unknown outcome and the references.

export { DEFAULT_MAX_MEMO_BYTES, DEFAULT_MAX_STEPS, checkLinearizable, describeOperation } from './checker.js';
export { HistoryRecorder } from './history-recorder.js';
export type { Clock, OperationId } from './history-recorder.js';
export { createKvModel, kvModel } from './models/kv.js';
export type {
  KvCasOutput,
  KvDeleteOutput,
  KvGetOutput,
  KvInput,
  KvKeyState,
  KvModelOptions,
  KvOperation,
  KvOutput,
  KvPutOutput,
} from './models/kv.js';
export { registerModel } from './models/register.js';
export type { RegisterInput, RegisterOutput } from './models/register.js';
export type {
  CheckOptions,
  CheckResult,
  ClientId,
  IllegalExplanation,
  Model,
  Operation,
  Partition,
  PartitionReport,
  StepResult,
  Verdict,
} from './types.js';
