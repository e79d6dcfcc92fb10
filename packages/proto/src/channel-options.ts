// What a client channel to a Concord server should be set to, in one place for the SDK
// (@concord/client) and for Concord's own processes (@concord/runtime's CLIENT_CHANNEL_OPTIONS):
// both depend on this package, and neither on the other.

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
