// Throwaway certificate authorities and certificates for tests of mutual TLS, made with the openssl
// command (Node's crypto can verify certificates but not issue them). EC P-256 keys, valid for a
// week: long enough for any test run, short enough that a leaked test key is worthless.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertificateFiles {
  /** PEM certificate file. */
  cert: string;
  /** PEM private key file. */
  key: string;
}

export interface IssueOptions {
  /** DNS names the certificate is valid for (subjectAltName). */
  dns?: readonly string[];
  /** IP addresses the certificate is valid for (subjectAltName). */
  ips?: readonly string[];
}

const VALID_DAYS = '7';

function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString('utf8').trim() ?? '';
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(
      missing ? 'the openssl command is needed to make test certificates and was not found on PATH' : `openssl ${args[0]} failed: ${stderr || String(error)}`,
      { cause: error },
    );
  }
}

/** A new self-signed CA in `dir`, as `<name>.crt` and `<name>.key`. */
export function createCertificateAuthority(dir: string, name: string): CertificateFiles {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', files.key, '-out', files.cert, '-days', VALID_DAYS, '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return files;
}

/**
 * A certificate signed by `ca`, in `dir` as `<name>.crt` and `<name>.key`, usable both as server
 * and as client certificate (Concord processes present one certificate in both roles).
 */
export function issueCertificate(ca: CertificateFiles, dir: string, name: string, options: IssueOptions = {}): CertificateFiles {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const request = join(dir, `${name}.csr`);
  const extensions = join(dir, `${name}.ext`);
  const altNames = [...(options.dns ?? []).map((dns) => `DNS:${dns}`), ...(options.ips ?? []).map((ip) => `IP:${ip}`)];
  writeFileSync(
    extensions,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      ...(altNames.length > 0 ? [`subjectAltName=${altNames.join(',')}`] : []),
    ].join('\n') + '\n',
  );
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', files.key, '-out', request, '-subj', `/CN=${name}`]);
  openssl([
    'x509', '-req', '-in', request, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', VALID_DAYS, '-extfile', extensions, '-out', files.cert,
  ]);
  return files;
}
