// Followers of the meta group forward public calls to its leader, so a client (grpcurl, the SDK
// in coordinator routing, a Kubernetes Service spreading connections over every coordinator)
// can use any coordinator. See docs/architecture.md, "Coordinators: the meta group", for why
// forwarding rather than redirecting.
//
// The wrapper works on a service's grpc-js definition, so every unary and server-streaming method
// of KV, Cluster, Txn and MapReduce (and whatever they grow) is forwarded the same way: the request
// is re-encoded with the method's own serializer and sent to the leader over one channel kept per
// leader address, with the client's metadata, its deadline (grpc-js deadline propagation: the
// forwarded call ends when the client's would) and its cancellation. The leader's answer — its
// messages, status, message and trailing metadata — goes back unchanged. A call is forwarded at
// most once: a forwarded call reaching a member that does not lead any more is refused with
// NOT_LEADER rather than sent on, so two members with stale views cannot bounce it between them.
// A leader that cannot be reached at all (it died and this member has not noticed yet) is
// answered with NOT_LEADER too, naming no leader: the call reached none, so it is safe to retry.

import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, ConcordError, METADATA_LEADER, METADATA_REASON, REASON_NOT_LEADER, failedBeforeSending } from '@concord/client';
import { ServiceError, toStatusObject, unary, unaryHandlerOf } from '@concord/runtime';
import type { MetaLeader } from './meta/meta-group.js';

/** Metadata naming the member that forwarded a call; its presence stops a second hop. */
export const METADATA_FORWARDED_FROM = 'concord-forwarded-from';

/** The answer to a call that needs the meta leader while there is none. */
export const NO_META_LEADER_MESSAGE = 'no meta leader elected yet; retry';

/**
 * HTTP/2 keepalive on channels to the leader: a leader that vanished without closing its TCP
 * connection (a partition, a dead host) fails the calls forwarded to it within time + timeout,
 * rather than leaving calls without a deadline waiting forever (the same values as the consensus
 * peer channels).
 */
export const FORWARD_KEEPALIVE_TIME_MS = 10_000;
export const FORWARD_KEEPALIVE_TIMEOUT_MS = 5_000;

const FORWARD_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...CHANNEL_OPTIONS,
  'grpc.keepalive_time_ms': FORWARD_KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': FORWARD_KEEPALIVE_TIMEOUT_MS,
};

/** Request metadata that belongs to one HTTP/2 hop and is not passed on. */
const HOP_BY_HOP = new Set(['content-type', 'te', 'user-agent', 'host', 'content-length', 'accept-encoding', METADATA_FORWARDED_FROM]);

/** What the forwarder needs of a server call (unary or server-streaming). */
type ForwardableCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

export interface ForwardingPolicy {
  /** Calls always answered by the member that receives them, e.g. a probe of that member itself. */
  alwaysLocal?(method: string, call: ForwardableCall): boolean;
  /**
   * Methods a member answers itself, as best it can, when it knows no leader or cannot reach the
   * one it knows (Cluster.Status). Unary methods only.
   */
  localWithoutLeader?(method: string): boolean;
}

export interface LeaderForwarderOptions {
  /** This coordinator's member id, sent along so the leader can tell a forwarded call. */
  memberId: string;
  leader: () => MetaLeader;
  /** Credentials of channels to the leader; default insecure. */
  credentials?: grpc.ChannelCredentials;
}

type Route = { kind: 'local' } | { kind: 'forward'; memberId: string; address: string } | { kind: 'refuse'; error: ServiceError };

export class LeaderForwarder {
  private readonly channels = new Map<string, grpc.Client>();
  private readonly credentials: grpc.ChannelCredentials;
  private closed = false;

  constructor(private readonly options: LeaderForwarderOptions) {
    this.credentials = options.credentials ?? grpc.credentials.createInsecure();
  }

  /** The implementation to register: `implementation` on the leader, forwarding on the others. */
  wrap(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation, policy: ForwardingPolicy = {}): grpc.UntypedServiceImplementation {
    const wrapped: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(definition)) {
      const local = implementation[name];
      if (local === undefined) throw new Error(`no implementation of ${method.path}`);
      if (method.requestStream) throw new Error(`${method.path}: forwarding client-streaming methods is not supported`);
      wrapped[name] = method.responseStream
        ? this.serverStreamHandler(name, method, local as grpc.handleServerStreamingCall<unknown, unknown>, policy)
        : this.unaryHandler(name, method, local as grpc.handleUnaryCall<unknown, unknown>, policy);
    }
    return wrapped;
  }

  /** Closes the channels to leaders; calls forwarded after this fail UNAVAILABLE. */
  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  private route(method: string, call: ForwardableCall, policy: ForwardingPolicy): Route {
    if (policy.alwaysLocal?.(method, call) === true) return { kind: 'local' };
    const leader = this.options.leader();
    if (leader.kind === 'self') return { kind: 'local' };
    const fallBack = policy.localWithoutLeader?.(method) === true;
    if (leader.kind === 'unknown') {
      // NOT_LEADER without concord-leader, as a shard replica that knows no leader answers: the
      // call was refused before anything was done, so a client may send it to another coordinator.
      return fallBack
        ? { kind: 'local' }
        : { kind: 'refuse', error: new ServiceError(grpc.status.UNAVAILABLE, NO_META_LEADER_MESSAGE, { [METADATA_REASON]: REASON_NOT_LEADER }) };
    }
    const forwardedBy = call.metadata.get(METADATA_FORWARDED_FROM)[0];
    if (forwardedBy !== undefined) {
      if (fallBack) return { kind: 'local' };
      return {
        kind: 'refuse',
        error: new ServiceError(
          grpc.status.UNAVAILABLE,
          `coordinator ${this.options.memberId} no longer leads the meta group (${String(forwardedBy)} forwarded this call here; the leader is now ${leader.memberId} at ${leader.address}); retry`,
          { [METADATA_REASON]: REASON_NOT_LEADER, [METADATA_LEADER]: leader.address },
        ),
      };
    }
    if (this.closed) return { kind: 'refuse', error: new ServiceError(grpc.status.UNAVAILABLE, 'this coordinator is shutting down; retry') };
    return { kind: 'forward', memberId: leader.memberId, address: leader.address };
  }

  private unaryHandler(
    name: string,
    method: grpc.MethodDefinition<unknown, unknown>,
    local: grpc.handleUnaryCall<unknown, unknown>,
    policy: ForwardingPolicy,
  ): grpc.handleUnaryCall<unknown, unknown> {
    // Made with unary() and wrapped with unary(): ConcordServer answers the method straight off
    // HTTP/2 (the runtime's direct-unary.ts) whether this member serves it or forwards it.
    const localHandler = unaryHandlerOf(local);
    if (localHandler === undefined) throw new Error(`${method.path}: forwarding needs a handler made with unary()`);
    return unary((request, call) => {
      const route = this.route(name, call, policy);
      if (route.kind === 'local') return localHandler(request, call);
      if (route.kind === 'refuse') throw route.error;
      return new Promise((resolve, reject) => {
        this.forwardUnary(route, method, request, call, (error, response) => {
          // The leader this member knows is gone and it has not noticed yet: a method that may
          // answer without a leader does, rather than fail.
          if (error !== null && error.code === grpc.status.UNAVAILABLE && policy.localWithoutLeader?.(name) === true) {
            resolve(localHandler(request, call));
          } else if (error !== null) reject(this.leaderUnreachable(route, error) ?? error);
          else resolve(response);
        });
      });
    });
  }

  /** Sends a unary call on to the leader with the client's metadata, deadline and cancellation. */
  private forwardUnary(
    route: { memberId: string; address: string },
    method: grpc.MethodDefinition<unknown, unknown>,
    request: unknown,
    call: grpc.ServerUnaryCall<unknown, unknown>,
    done: (error: grpc.ServiceError | null, response?: unknown) => void,
  ): void {
    this.channel(route.address).makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      outgoingMetadata(call, this.options.memberId),
      callOptions(call),
      done,
    );
  }

  private serverStreamHandler(
    name: string,
    method: grpc.MethodDefinition<unknown, unknown>,
    local: grpc.handleServerStreamingCall<unknown, unknown>,
    policy: ForwardingPolicy,
  ): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      const route = this.route(name, call, policy);
      if (route.kind === 'local') return local(call);
      if (route.kind === 'refuse') return failStream(call, route.error);
      const upstream = this.channel(route.address).makeServerStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        call.request,
        outgoingMetadata(call, this.options.memberId),
        callOptions(call),
      );
      let failed = false;
      let relayed = false;
      upstream.on('data', (message: unknown) => {
        relayed = true;
        if (call.cancelled) return;
        // Backpressure end to end: stop reading from the leader while the client is slow.
        if (!call.write(message)) {
          upstream.pause();
          call.once('drain', () => upstream.resume());
        }
      });
      upstream.on('error', (error: grpc.ServiceError) => {
        failed = true;
        failStream(call, (relayed ? undefined : this.leaderUnreachable(route, error)) ?? error);
      });
      // 'end' comes once every message was handed on ('error', when the call failed, comes first).
      upstream.on('end', () => {
        if (!failed && !call.cancelled) call.end();
      });
    };
  }

  /**
   * When the leader could not be reached at all — grpc-js established no connection, so nothing was
   * sent — the refusal this member answers instead of relaying grpc-js's words, which would read as
   * if this member itself refused the client's connection. Undefined for any other failure.
   */
  private leaderUnreachable(route: { memberId: string; address: string }, error: grpc.ServiceError): ServiceError | undefined {
    if (!failedBeforeSending(new ConcordError(error.code, error.details))) return undefined;
    return new ServiceError(
      grpc.status.UNAVAILABLE,
      `coordinator ${this.options.memberId} cannot reach the meta leader ${route.memberId} at ${route.address} (${error.details.trim()}); nothing was done, retry`,
      { [METADATA_REASON]: REASON_NOT_LEADER },
    );
  }

  private channel(address: string): grpc.Client {
    let channel = this.channels.get(address);
    if (channel === undefined) {
      channel = new grpc.Client(address, this.credentials, FORWARD_CHANNEL_OPTIONS);
      this.channels.set(address, channel);
    }
    return channel;
  }
}

/** The client's metadata minus what belongs to its HTTP/2 hop, plus who forwarded it. */
function outgoingMetadata(call: ForwardableCall, memberId: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const key of Object.keys(call.metadata.getMap())) {
    if (key.startsWith('grpc-') || key.startsWith(':') || HOP_BY_HOP.has(key)) continue;
    for (const value of call.metadata.get(key)) metadata.add(key, value);
  }
  metadata.set(METADATA_FORWARDED_FROM, memberId);
  return metadata;
}

/** The forwarded call inherits the client's deadline and ends when the client cancels. */
function callOptions(call: ForwardableCall): grpc.CallOptions {
  return { parent: call, propagate_flags: grpc.propagate.DEADLINE | grpc.propagate.CANCELLATION };
}

/** Ends a server stream with the status of `error` (as the runtime's serverStream adapter does). */
function failStream(call: grpc.ServerWritableStream<unknown, unknown>, error: unknown): void {
  if (call.cancelled) return;
  const statusObject = toStatusObject(error);
  call.emit('error', Object.assign(new Error(statusObject.details), statusObject));
}
