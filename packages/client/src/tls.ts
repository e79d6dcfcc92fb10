// TLS for the SDK's channels: to the coordinators and, with direct routing, to the shard replicas.
// Concord servers started with --tls-cert/--tls-key/--tls-ca require a client certificate signed
// by their CA (mutual TLS), so a client of such a cluster gives `cert` and `key` as well as `ca`.

import { isIP } from 'node:net';
import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';

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

/**
 * grpc-js (1.14) sends the host it dials as the TLS server name (SNI) even when it is an IP
 * address, which RFC 6066 forbids and Node 26 refuses outright, so a TLS channel to, say,
 * 127.0.0.1:7070 would never connect. Dropping the server name for IP targets lets Node verify the
 * certificate against the IP address, as for any TLS socket; host names are untouched. If grpc-js
 * changes the internals patched here, the credentials are left as they are. The roles carry the
 * same fix (packages/runtime/src/tls.ts).
 */
function withoutIpServerName(credentials: ChannelCredentials): ChannelCredentials {
  type Connector = { connectionOptions?: { servername?: string } };
  const patchable = credentials as unknown as { _createSecureConnector?: (...args: unknown[]) => Connector };
  const createConnector = patchable._createSecureConnector;
  if (typeof createConnector !== 'function') return credentials;
  patchable._createSecureConnector = function (this: unknown, ...args: unknown[]): Connector {
    const connector = createConnector.apply(this, args);
    const options = connector.connectionOptions;
    if (options !== undefined && typeof options.servername === 'string' && isIP(options.servername) !== 0) delete options.servername;
    return connector;
  };
  return credentials;
}
