// The building blocks of `npm run bench`, for benchmarks elsewhere in the repository.
export { runClosedLoop } from './closed-loop.js';
export type { ClosedLoopOptions, ClosedLoopResult } from './closed-loop.js';
export { EchoClient, startEchoServer } from './echo.js';
export type { EchoServerProcess } from './echo.js';
export { ECHO_METHOD_PATH, ECHO_SERVICE } from './echo-service.js';
export { machineInfo, summarize, formatSummary, ratio, ERROR_RATE_WARNING } from './report.js';
export type { LoopSummary, MachineInfo } from './report.js';
export { CpuSampler, machineBusyShare } from './cpu.js';
export type { CpuSample, CpuUse } from './cpu.js';
export { runKvBench } from './kv/kv-bench.js';
export { runRaftBench } from './raft/raft-bench.js';
