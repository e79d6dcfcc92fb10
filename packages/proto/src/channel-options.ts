// What a client channel to a Concord server should be set to, in one place for the SDK
// (@concord/client) and for Concord's own processes (@concord/runtime's CLIENT_CHANNEL_OPTIONS and
// channel credentials): both depend on this package, and neither on the other.
import { isIP } from 'node:net';
import type { ChannelCredentials } from '@grpc/grpc-js';

/**
 * Largest message a Concord server sends or accepts, and a Concord channel sends or accepts: a
 * 1 MiB value plus a 4 KiB key fit with room for batches and framing.
 */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/**
 * Longest pause between reconnection attempts to a server that went away. grpc-js would wait up to
 * two minutes (1 s, then 1.6 times longer each time); a replica or coordinator restarted by a
 * rolling update should be used again within about a second, and one attempt a second at a server
 * that is down costs nothing worth saving.
 */
export const MAX_RECONNECT_BACKOFF_MS = 1000;
/** The first pause: a server that only dropped its connection is back within a tenth of a second. */
export const INITIAL_RECONNECT_BACKOFF_MS = 100;

/** The grpc-js channel options of every Concord client channel. */
export const CHANNEL_OPTIONS = {
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.initial_reconnect_backoff_ms': INITIAL_RECONNECT_BACKOFF_MS,
  'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
  // Channelz statistics are only useful with a channelz service to read them, which Concord does
  // not serve (traces and Prometheus metrics cover the same ground); gathering them costs a few
  // percent of the CPU of every call.
  'grpc.enable_channelz': 0,
} as const;

/**
 * grpc-js (1.14) sends the host it dials as the TLS server name (SNI) even when it is an IP
 * address, which RFC 6066 forbids and Node 26 refuses outright ("Setting the TLS ServerName to an
 * IP address is not permitted"), so every TLS channel to an IP address such as 127.0.0.1:7101
 * would fail before connecting. Dropping the server name for IP targets lets Node verify the
 * certificate against the IP (its subjectAltName IP entries) as it does for any TLS socket. Host
 * names are untouched. If grpc-js changes the internals patched here, this leaves the credentials
 * as they are. Returns `credentials`, patched.
 */
export function withoutIpServerName(credentials: ChannelCredentials): ChannelCredentials {
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
