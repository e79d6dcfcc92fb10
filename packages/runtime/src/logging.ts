// JSON logs on stdout, one object a line, carrying the trace and span of the active OpenTelemetry
// span so a log line can be found from a trace in Jaeger and the other way round.
import { trace, isSpanContextValid } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger } from 'pino';
export type { Logger };

/** The levels `createLogger` accepts, lowest first: use as the values of a `--log-level` enum option. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export interface LoggerOptions {
  /** Logical service name, e.g. "shard"; every line carries it as `service`. */
  service: string;
  /** One of LOG_LEVELS; default "info". */
  level?: string;
  /** This process's member id in its consensus group, when it has one; carried as `member_id`. */
  memberId?: string;
  /** Where lines go; default stdout. Tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/** Fields of the span active where the line is logged, or nothing outside a (sampled or not) span. */
export function activeTraceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const context = span.spanContext();
  if (!isSpanContextValid(context)) return {};
  return { trace_id: context.traceId, span_id: context.spanId };
}

export function createLogger(options: LoggerOptions): Logger {
  const base: Record<string, string> = { service: options.service };
  if (options.memberId !== undefined) base['member_id'] = options.memberId;
  return pino(
    {
      level: options.level ?? 'info',
      base,
      // Level names ("info") read better in `kubectl logs` and Loki than pino's numbers.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin: activeTraceFields,
    },
    // Default: pino's synchronous stdout, so the line explaining a crash is written before exit.
    options.destination,
  );
}
