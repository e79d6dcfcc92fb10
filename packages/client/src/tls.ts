// TLS for the SDK's channels: to the coordinators and, with direct routing, to the shard replicas.
// Concord servers started with --tls-cert/--tls-key/--tls-ca require a client certificate signed
// by their CA (mutual TLS), so a client of such a cluster gives `cert` and `key` as well as `ca`.

import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { withoutIpServerName } from '@concord/proto';

/** PEM contents (not file names) of what a TLS connection to Concord needs. */
export interface TlsOptions {
  /** The CA certificate(s) the servers' certificates must be signed by. */
  ca: Buffer;
  /** This client's certificate, signed by a CA the servers trust; with `key`. */
  cert?: Buffer;
  /** The private key of `cert`. */
  key?: Buffer;
}

/**
 * Channel credentials for `tls`: the server's certificate is checked against `ca` and against the
 * host (name or IP address) dialled; `cert` and `key`, when given, are presented to the server.
 */
export function tlsCredentials(tls: TlsOptions): ChannelCredentials {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError('tls: cert and key go together: give both to present a client certificate, or neither');
  }
  return withoutIpServerName(grpcCredentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null));
}

