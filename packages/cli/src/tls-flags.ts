// The CLI's --tls-ca, --tls-cert and --tls-key: the files its channels to a cluster started with
// --tls-* use. Those servers require a client certificate (mutual TLS), so all three are given
// together, as for the servers themselves; the same CONCORD_TLS_* variables serve both, so a pod
// that runs `concord serve` can run `concord status` with the same environment.
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import type { TlsOptions } from '@concord/client';

export interface TlsFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const TLS_FLAGS = [
  { key: 'tlsCa', flag: '--tls-ca', env: 'CONCORD_TLS_CA', doc: 'PEM file with the CA certificate(s) the cluster\'s certificates are signed by' },
  { key: 'tlsCert', flag: '--tls-cert', env: 'CONCORD_TLS_CERT', doc: 'PEM file with the client certificate to present (signed by a CA the cluster trusts)' },
  { key: 'tlsKey', flag: '--tls-key', env: 'CONCORD_TLS_KEY', doc: 'PEM file with the private key of --tls-cert' },
] as const;

/** The three options, to add to the program (global: they apply to every command that connects). */
export function tlsOptions(): Option[] {
  return TLS_FLAGS.map(({ flag, env, doc }) =>
    new Option(`${flag} <file>`, `${doc}; with the other two --tls-* flags, every connection is mutual TLS`).env(env),
  );
}

/** The PEM contents for ConcordClient.connect's `tls`, or undefined for plaintext. Throws naming the flag and file. */
export function readTlsFlags(flags: TlsFlags): TlsOptions | undefined {
  const given = TLS_FLAGS.filter(({ key }) => (flags[key] ?? '') !== '');
  if (given.length === 0) return undefined;
  if (given.length < TLS_FLAGS.length) {
    const missing = TLS_FLAGS.filter((each) => !given.includes(each)).map(({ flag }) => flag);
    throw new Error(
      `--tls-ca, --tls-cert and --tls-key go together: give all three for mutual TLS, or none for plaintext ` +
        `(got ${given.map(({ flag }) => flag).join(' and ')}, missing ${missing.join(' and ')}; each may also come from its CONCORD_TLS_* variable)`,
    );
  }
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`${flag}: cannot read ${path} (${error instanceof Error ? error.message : String(error)})`);
    }
  };
  return { ca: read('--tls-ca', flags.tlsCa!), cert: read('--tls-cert', flags.tlsCert!), key: read('--tls-key', flags.tlsKey!) };
}

/**
 * The --tls-* flags given on the command line, to hand on to `concord serve <role>`: commander
 * takes the program's own options wherever they appear, so `concord serve shard --tls-ca ca.crt`
 * would otherwise lose them. Values from the environment are left out: the role reads the same
 * variables itself.
 */
export function tlsFlagsForRole(program: Command): string[] {
  const flags = program.opts<TlsFlags>();
  return TLS_FLAGS.flatMap(({ key, flag }) => {
    const value = flags[key];
    return value !== undefined && program.getOptionValueSource(key) === 'cli' ? [flag, value] : [];
  });
}
