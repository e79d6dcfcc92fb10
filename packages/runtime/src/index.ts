export { ServiceError, toStatusObject, isRelayedGrpcError, isUnexpectedError, INTERNAL_ERROR_MESSAGE } from './errors.js';
export {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  DEFAULT_SCAN_LIMIT,
  MAX_SCAN_LIMIT,
  validateKey,
  validateValue,
  validateScanLimit,
  validateConsistency,
  validateScanRange,
} from './limits.js';
export { compileOptionSpecs, formatOptionsHelp, OptionsError, parseDuration, formatDuration } from './options.js';
export type { OptionSpec, OptionSources } from './options.js';
export { createLogger, activeTraceFields, LOG_LEVELS } from './logging.js';
export type { Logger, LoggerOptions } from './logging.js';
export { startTelemetry, flushTelemetry, tracer, ignoreGrpcMethods, isIgnoredGrpcMethod, telemetryRequested } from './telemetry.js';
export type { TelemetryHandle, GrpcMethodPattern } from './telemetry.js';
export {
  ConcordServer,
  unary,
  unaryHandlerOf,
  serverStream,
  onShutdownSignals,
  callSignal,
  setHandlerLogger,
  MAX_MESSAGE_BYTES,
  CLIENT_CHANNEL_OPTIONS,
} from './server.js';
export type { ServiceBinding, ConcordServerOptions, UnaryHandler, ServerStreamHandler, ServerCall } from './server.js';
export { runRole, isEntryPoint, runRoleAsEntryPoint, EXIT_USAGE, EXIT_FAILURE } from './role-main.js';
export {
  DEFAULT_SERVER_NODE_FLAGS,
  NODE_FLAGS_ENV,
  serverNodeFlags,
  missingNodeFlags,
  relaunchWithServerNodeFlags,
  definedEnv,
} from './node-flags.js';
export type { RoleDefinition, RunningNode } from './role-main.js';
export {
  Metrics,
  processMetrics,
  startMetricsServer,
  METRIC_PREFIX,
  LATENCY_BUCKETS_SECONDS,
  BATCH_SIZE_BUCKETS,
} from './metrics.js';
export type {
  MetricSpec,
  HistogramSpec,
  MetricsOptions,
  MetricsServer,
  MetricsServerOptions,
  Counter,
  Gauge,
  Histogram,
  HotCounter,
  HotHistogram,
  SampledGauge,
  HotCounterChild,
  HotHistogramChild,
} from './metrics.js';
export {
  COMMON_ROLE_OPTION_SPECS,
  ADVERTISE_OPTION_SPEC,
  TLS_OPTION_SPECS,
  ID_PATTERN,
  ID_DOC,
  LISTEN_PATTERN,
  splitHostPort,
  isWildcardHost,
  optionOrigin,
  compileAdvertise,
} from './role-options.js';
export { compileTlsOptions, serverTlsOptions, channelCredentials } from './tls.js';
export type { TlsMaterial, RawTlsOptions } from './tls.js';
