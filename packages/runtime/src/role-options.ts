// Settings and address shapes every Concord role shares, so `--help` of each role describes them
// with the same words and limits.
import { LOG_LEVELS } from './logging.js';
import type { OptionSpec } from './options.js';

/**
 * host:port to bind: a host name, an IPv4 address or a bracketed IPv6 address such as [::1], and a
 * port from 0 to 65535 (0 picks a free one).
 */
export const LISTEN_PATTERN =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})$/;

/** Splits a LISTEN_PATTERN-checked "host:port"; IPv6 brackets are removed. */
export function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(address.slice(colon + 1)) };
}

/** --log-level and --metrics-listen, as every role exposes them. */
export const COMMON_ROLE_OPTION_SPECS = {
  logLevel: {
    kind: 'enum',
    flag: 'log-level',
    env: 'CONCORD_LOG_LEVEL',
    default: 'info',
    values: LOG_LEVELS,
    doc: 'Lowest level of log lines written to stdout.',
  },
  metricsListen: {
    kind: 'string',
    flag: 'metrics-listen',
    env: 'CONCORD_METRICS_LISTEN',
    default: '',
    doc:
      'host:port to serve Prometheus metrics on (GET /metrics); empty serves none. Off by default because every process ' +
      'needs a port of its own (the local cluster runs a dozen on one machine): choose them on purpose. Port 0 picks a free port.',
    pattern: new RegExp(`^$|${LISTEN_PATTERN.source}`),
    patternDoc: 'empty, or host:port with a port from 0 to 65535, e.g. 127.0.0.1:7170 or [::1]:7170',
  },
} as const satisfies Record<string, OptionSpec>;
