// Mutual TLS between Concord processes: --tls-cert, --tls-key and --tls-ca, all three or none.
//
// With them, a role's gRPC server presents its certificate and accepts only clients that present
// one signed by the CA, and every channel the role opens (Raft peers, coordinator to shard,
// follower to meta leader) presents the same certificate as its client certificate. Client
// certificates are always required: the consensus peer service shares the port with the public
// services, and grpc-js verifies clients per server, not per service, so a server that let clients
// in without a certificate would let anyone who reaches the port send Raft messages.
//
// The files are read once, at start-up: replacing them (cert-manager renewing a Secret) takes a
// restart. A file that cannot be read or parsed, or a key that does not match its certificate, is
// a bad setting (exit 2, naming the flag and the file), not a handshake failure found later.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { withoutIpServerName } from '@concord/proto';
import { OptionsError, type OptionSources } from './options.js';
import { TLS_OPTION_SPECS, optionOrigin } from './role-options.js';

/** PEM contents of the three TLS files. */
export interface TlsMaterial {
  /** This process's certificate (chain), presented as server and as client certificate. */
  cert: Buffer;
  /** Its private key. */
  key: Buffer;
  /** The CA certificate(s) the peer's certificate must chain to. */
  ca: Buffer;
}

/** The raw --tls-* values, as compileOptionSpecs returns them. */
export interface RawTlsOptions {
  tlsCert: string;
  tlsKey: string;
  tlsCa: string;
}

/**
 * Checks that the --tls-* settings are all given or none, then reads and checks the files.
 * Returns undefined for plaintext. Throws OptionsError naming the setting (and file) to fix.
 */
export function compileTlsOptions(raw: RawTlsOptions, sources: OptionSources): TlsMaterial | undefined {
  const settings = [
    { name: 'cert', path: raw.tlsCert, origin: optionOrigin(sources, TLS_OPTION_SPECS.tlsCert) },
    { name: 'key', path: raw.tlsKey, origin: optionOrigin(sources, TLS_OPTION_SPECS.tlsKey) },
    { name: 'ca', path: raw.tlsCa, origin: optionOrigin(sources, TLS_OPTION_SPECS.tlsCa) },
  ] as const;
  const given = settings.filter((setting) => setting.path !== '');
  if (given.length === 0) return undefined;
  if (given.length < settings.length) {
    const missing = settings.filter((setting) => setting.path === '').map((setting) => `--${TLS_FLAG[setting.name]}`);
    throw new OptionsError(
      `--tls-cert, --tls-key and --tls-ca go together: give all three for mutual TLS, or none for plaintext ` +
        `(got ${given.map((setting) => setting.origin).join(' and ')}, missing ${missing.join(' and ')})`,
    );
  }
  const [cert, key, ca] = settings.map((setting) => readSetting(setting.origin, setting.path)) as [Buffer, Buffer, Buffer];
  const [certSetting, keySetting, caSetting] = settings;
  const certificate = parseCertificate(certSetting.origin, certSetting.path, cert);
  parseCertificate(caSetting.origin, caSetting.path, ca);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new OptionsError(`${keySetting.origin}: ${keySetting.path} holds no PEM private key (${describe(error)})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new OptionsError(
      `${keySetting.origin}: ${keySetting.path} is not the private key of the certificate in ${certSetting.origin} ${certSetting.path}`,
    );
  }
  return { cert, key, ca };
}

const TLS_FLAG = { cert: 'tls-cert', key: 'tls-key', ca: 'tls-ca' } as const;

function readSetting(origin: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new OptionsError(`${origin}: cannot read ${path} (${describe(error)})`);
  }
}

function parseCertificate(origin: string, path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new OptionsError(`${origin}: ${path} holds no PEM certificate (${describe(error)})`);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The TLS settings of a Concord server (ConcordServer's HTTP/2 server): present `cert`, and require
 * a client certificate signed by `ca` (see the top of this file).
 */
export function serverTlsOptions(tls: TlsMaterial): { cert: Buffer; key: Buffer; ca: Buffer; requestCert: true; rejectUnauthorized: true } {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true };
}

/**
 * Credentials of a channel one Concord process opens to another: TLS, verifying the server's
 * certificate against the CA and its name against the address dialled, and presenting this
 * process's certificate; plaintext without `tls`.
 */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  // One object per TlsMaterial: grpc-js shares connections between channels only when their
  // credentials are the same, as every insecure credentials object is.
  let credentials = channelCredentialsCache.get(tls);
  if (credentials === undefined) {
    credentials = withoutIpServerName(grpc.credentials.createSsl(tls.ca, tls.key, tls.cert));
    channelCredentialsCache.set(tls, credentials);
  }
  return credentials;
}

const channelCredentialsCache = new WeakMap<TlsMaterial, grpc.ChannelCredentials>();

