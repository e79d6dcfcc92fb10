// Settings and address shapes every Concord role shares, so `--help` of each role describes them
// with the same words and limits.
import { LOG_LEVELS } from './logging.js';
import { OptionsError, type OptionSources, type OptionSpec } from './options.js';

/** Group and member ids appear in metrics labels, file names and k8s object names, in every role. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const ID_DOC = '1 to 64 letters, digits, "-" or "_"';

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

/** Whether `host` (without brackets) binds every interface: an address no other process can dial. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/**
 * Names where a setting came from, phrased as compileOptionSpecs does for its own errors: the flag
 * when it was given (or has no variable), else the environment variable when that is set.
 */
export function optionOrigin(sources: OptionSources, spec: OptionSpec): string {
  const flag = `--${spec.flag.replace(/^-+/, '')}`;
  const fromFlag = sources.argv.some((token) => token === flag || token.startsWith(`${flag}=`));
  if (fromFlag || spec.env === undefined) return flag;
  const fromEnv = sources.env[spec.env];
  return fromEnv !== undefined && fromEnv !== '' ? `${spec.env} (for ${flag})` : flag;
}

/** --tls-cert, --tls-key, --tls-ca (tls.ts reads and checks the files). */
export const TLS_OPTION_SPECS = {
  tlsCert: {
    kind: 'string',
    flag: 'tls-cert',
    env: 'CONCORD_TLS_CERT',
    default: '',
    doc:
      "PEM file with this process's certificate, presented to clients and, as client certificate, to the processes it calls. " +
      'With --tls-key and --tls-ca (all three or none) every gRPC connection, in and out, is mutual TLS; empty: plaintext. ' +
      'Read once at start: a renewed certificate takes a restart.',
  },
  tlsKey: {
    kind: 'string',
    flag: 'tls-key',
    env: 'CONCORD_TLS_KEY',
    default: '',
    doc: 'PEM file with the private key of --tls-cert.',
  },
  tlsCa: {
    kind: 'string',
    flag: 'tls-ca',
    env: 'CONCORD_TLS_CA',
    default: '',
    doc:
      'PEM file with the CA certificate(s) that every peer and client certificate must be signed by; a client without such a ' +
      'certificate is refused. The metrics endpoint (--metrics-listen) stays plain HTTP.',
  },
} as const satisfies Record<string, OptionSpec>;

/** --advertise: what a role tells others about where it is, when that differs from --listen. */
export const ADVERTISE_OPTION_SPEC = {
  kind: 'string',
  flag: 'advertise',
  env: 'CONCORD_ADVERTISE',
  default: '',
  doc:
    'host:port the other processes and clients dial to reach this one, when --listen is not an address they can dial: e.g. ' +
    '--listen 0.0.0.0:7100 in a Kubernetes pod reached as <pod>.<headless-service>:7100. It is what this process names ' +
    'as its own address to its Raft peers, in leader hints and in status. Empty: with raft, its --peers entry (which ' +
    '--advertise, when given, must equal); otherwise the --listen address.',
  pattern: new RegExp(`^$|${LISTEN_PATTERN.source}`),
  patternDoc: 'empty, or host:port with a port from 1 to 65535, e.g. concord-shard-g1-0.concord-shard-g1:7100 or 10.0.0.5:7100',
} as const satisfies OptionSpec;

/**
 * The --advertise value once the pattern passed: '' (not given) or an address another process can
 * dial, so neither port 0 nor a wildcard host. Throws OptionsError naming where it came from.
 */
export function compileAdvertise(advertise: string, sources: OptionSources): string {
  if (advertise === '') return '';
  const { host, port } = splitHostPort(advertise);
  const origin = optionOrigin(sources, ADVERTISE_OPTION_SPEC);
  if (port === 0) throw new OptionsError(`${origin}: is the address others dial, so it needs a port from 1 to 65535 (got ${JSON.stringify(advertise)})`);
  if (isWildcardHost(host)) {
    throw new OptionsError(`${origin}: is the address others dial, so it must name this host (a DNS name or an IP address), not ${host} (got ${JSON.stringify(advertise)})`);
  }
  return advertise;
}

/** --log-level, --metrics-listen, --advertise and the --tls-* files, as every role exposes them. */
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
  advertise: ADVERTISE_OPTION_SPEC,
  ...TLS_OPTION_SPECS,
} as const satisfies Record<string, OptionSpec>;
