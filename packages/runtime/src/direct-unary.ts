// Unary calls answered straight off node:http2, beside grpc-js on the same port.
//
// Why: for a small unary call, most of a server's CPU went to grpc-js's per-call machinery (an
// intercepting call with its listener and responder objects, a stream decoder, metadata objects,
// a deadline timer, the promises between them) rather than to the request. On a Raft leader that
// CPU sits on the path every put takes; at 64 puts in flight, answering Shard.Put here instead of
// through grpc-js cut the leader's CPU per put by about a third and raised puts/s by a quarter
// (docs/performance.md). ConcordServer therefore owns the HTTP/2 server: the unary methods whose
// handlers came from unary() are served here, and every other stream (server streams, the peer
// streams of consensus, health, reflection, an unknown method, a compressed request, anything that
// is not plain gRPC) goes to grpc-js's own stream handler, on the same connection.
//
// What a call gets here is what grpc-js gives it: the deadline from grpc-timeout (answered with
// DEADLINE_EXCEEDED when it passes), the 8 MiB limit on messages both ways, metadata, cancellation
// when the client goes away, a server span named and attributed like @opentelemetry/
// instrumentation-grpc's with the caller's trace context, the concord_grpc_server_* metrics, and
// the same status, message and trailing metadata for every error (errors.ts).
import { EventEmitter } from 'node:events';
import { constants as http2Constants, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, defaultTextMapGetter, isSpanContextValid, propagation, trace, type Span } from '@opentelemetry/api';
import { isUnexpectedError, toStatusObject } from './errors.js';

/** Set by unary() on the grpc-js handler it returns: the async handler underneath. */
export const DIRECT_HANDLER: unique symbol = Symbol('concord.directUnaryHandler');

export type DirectHandler = (request: unknown, call: grpc.ServerUnaryCall<unknown, unknown>) => Promise<unknown>;

/** One unary method served directly. */
export interface DirectRoute {
  readonly path: string;
  readonly service: string;
  readonly method: string;
  readonly spanName: string;
  readonly handler: DirectHandler;
  readonly deserialize: (bytes: Buffer) => unknown;
  readonly serialize: (value: unknown) => Buffer;
}

/** What the server lends every direct call. */
export interface DirectCallEnvironment {
  readonly maxMessageBytes: number;
  /** Counts and times a call once its status is known (the metering interceptor's job for grpc-js calls). */
  readonly meter: (route: DirectRoute, code: grpc.status, seconds: number) => void;
  /** Logs a failure the client only sees as INTERNAL. */
  readonly logFailure: (path: string, error: Error) => void;
}

/**
 * The unary methods of `services` whose implementation came from unary(), by path. A handler
 * wrapped by something else (the coordinator's forwarder, say) stays with grpc-js.
 */
export function directRoutes(services: Iterable<{ definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }>): Map<string, DirectRoute> {
  const routes = new Map<string, DirectRoute>();
  for (const { definition, implementation } of services) {
    for (const [name, method] of Object.entries(definition)) {
      if (method.requestStream || method.responseStream) continue;
      const implemented = (implementation[name] ?? (method.originalName !== undefined ? implementation[method.originalName] : undefined)) as
        | { [DIRECT_HANDLER]?: DirectHandler }
        | undefined;
      const handler = implemented?.[DIRECT_HANDLER];
      if (handler === undefined) continue;
      const slash = method.path.lastIndexOf('/');
      routes.set(method.path, {
        path: method.path,
        service: method.path.slice(1, slash),
        method: method.path.slice(slash + 1),
        spanName: `grpc.${method.path.slice(1)}`,
        handler,
        deserialize: method.requestDeserialize as (bytes: Buffer) => unknown,
        serialize: method.responseSerialize as (value: unknown) => Buffer,
      });
    }
  }
  return routes;
}

/**
 * Whether a stream is a plain gRPC call this module can answer: gRPC content type, and no message
 * compression (grpc-js decompresses gzip and deflate, so such calls go to it).
 */
export function isPlainGrpc(headers: IncomingHttpHeaders): boolean {
  const contentType = headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || encoding === 'identity';
}

/** Answers one unary call on a node:http2 `stream`. */
export function serveDirectUnary(route: DirectRoute, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, environment: DirectCallEnvironment): void {
  new NodeUnaryCall(route, stream, headers, environment).start();
}

const FRAME_HEADER_BYTES = 5;
const TIMEOUT_PATTERN = /^(\d{1,8})([HMSmun])$/;
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/**
 * The response headers of a direct answer. No `grpc-encoding`: without one a message is not
 * compressed, which is what gRPC servers in other languages (grpc-go, etcd's) leave implicit too.
 * No `grpc-accept-encoding` either (grpc-go does not send it on an answer; compressed requests are
 * still accepted, through grpc-js). Every header value a Node client receives becomes an external
 * string that only a full collection frees, and that collection walks all of them: with this
 * header a client of a busy leader spent about 3 ms more of each full-collection pause on them.
 */
const RESPONSE_HEADERS = { ':status': 200, 'content-type': 'application/grpc+proto' };
/**
 * The same headers as a flat list, which is how an OK answer sends them: given an object, Node copies
 * it into a new dictionary-mode object that the stream keeps (and that was a tenth of what a
 * leader promoted to the old generation per call); given a list, it reads the list as it is.
 * No `date` header: gRPC has no use for one, and Node would format it for every answer.
 */
export const RESPONSE_HEADER_LIST: readonly string[] = Object.freeze(
  Object.entries(RESPONSE_HEADERS).flatMap(([name, value]) => [name, String(value)]),
);
const RESPOND_WITH_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false });
/** The trailers of an OK answer: the status alone (an empty grpc-message is the same as none). */
const OK_TRAILERS = { 'grpc-status': '0' };
export const OK_TRAILER_LIST: readonly string[] = Object.freeze(Object.entries(OK_TRAILERS).flat());
/** Request headers grpc-js keeps out of the metadata a handler sees. */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'];

const tracer = trace.getTracer('@concord/runtime');

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The grpc-message trailer: percent-encoded as grpc-js does it, lone surrogates replaced rather than thrown on. */
function encodeGrpcMessage(details: string): string {
  return encodeURI(details.replace(LONE_SURROGATE, '\uFFFD'));
}

function ignoreError(): void {
  // A stream error always comes with a 'close', which is where the call notices it.
}

function sendOkTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

function expire(call: UnaryCall): void {
  call.deadlineReached();
}

/**
 * The call each stream belongs to, kept on the stream under this symbol. The stream's listeners are
 * the shared functions below, which find their call there, and a closed stream lets go of it:
 * Node's HTTP/2 stream objects often live through a scavenge or two after they close, and whatever
 * they still pointed to (the call, its request and headers) would be promoted to the old generation
 * with them. (A property rather than a WeakMap: the map's table, grown and shrunk by every call,
 * was itself promoted over and over.)
 */
const CALL = Symbol('concord.directUnaryCall');

interface StreamWithCall extends ServerHttp2Stream {
  [CALL]?: NodeUnaryCall | undefined;
}

function onStreamData(this: StreamWithCall, chunk: Buffer): void {
  this[CALL]?.data(chunk);
}

function onStreamEnd(this: StreamWithCall): void {
  this[CALL]?.end();
}

function onStreamClose(this: StreamWithCall): void {
  const call = this[CALL];
  this[CALL] = undefined;
  this.off('data', onStreamData);
  call?.closed();
}

/**
 * A unary call in progress, with what the grpc-js call object offers a handler (request, metadata,
 * getDeadline, getPath, getPeer, cancelled and the 'cancelled' event). Like grpc-js, it emits
 * 'cancelled' once the call is over for any reason, and `cancelled` is then true.
 *
 * The HTTP/2 side is the subclass's: NodeUnaryCall below answers on a node:http2 stream, the lean
 * server's calls (h2/lean-session.ts) on its own streams. The transport feeds data(), end() and
 * closed(); the call answers through writeAnswer(), writeStatus() and resetStream().
 */
export abstract class UnaryCall extends EventEmitter {
  request: unknown = undefined;
  cancelled = false;
  protected finished = false;
  private deadline = Infinity;
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = performance.now();
  private first: Buffer | undefined;
  private more: Buffer[] | undefined;
  private received = 0;
  private span: Span | undefined;
  private metadataValue: grpc.Metadata | undefined;

  constructor(
    protected readonly route: DirectRoute,
    protected readonly environment: DirectCallEnvironment,
  ) {
    super();
  }

  /** The request headers as Node presents them (names lowercase; repeated names as arrays). */
  protected abstract requestHeaders(): IncomingHttpHeaders;
  /** Whether an answer can still be written (nothing sent yet, stream not gone). */
  protected abstract answerable(): boolean;
  /** Response headers, `message` (serialized; the transport adds the gRPC length prefix) and OK trailers. */
  protected abstract writeAnswer(message: Buffer): void;
  /** A trailers-only answer made of `fields` ([name, value, ...]). */
  protected abstract writeStatus(fields: string[]): void;
  /** Resets the stream: writing the answer failed. */
  protected abstract resetStream(): void;
  abstract getPeer(): string;

  get metadata(): grpc.Metadata {
    if (this.metadataValue === undefined) {
      const metadata = grpc.Metadata.fromHttp2Headers(this.requestHeaders());
      for (const name of TRANSPORT_HEADERS) metadata.remove(name);
      this.metadataValue = metadata;
    }
    return this.metadataValue;
  }

  getDeadline(): grpc.Deadline {
    return this.deadline;
  }

  getPath(): string {
    return this.route.path;
  }

  /** Starts the deadline (the transport is already feeding the call). */
  start(): void {
    const timeout = this.requestHeaders()['grpc-timeout'];
    if (timeout !== undefined) {
      const match = TIMEOUT_PATTERN.exec(String(timeout));
      if (match === null) {
        this.answerStatus(grpc.status.INTERNAL, `Invalid grpc-timeout value "${String(timeout)}"`);
        return;
      }
      const ms = Math.trunc(Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]!);
      this.deadline = Date.now() + ms;
      // Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer deadline never fires here.
      if (ms <= MAX_TIMER_MS) this.timer = setTimeout(expire, ms, this);
    }
  }

  /** Request data; false when it is not kept (the call is answered already). */
  data(chunk: Buffer): boolean {
    if (this.finished) return false;
    this.received += chunk.length;
    if (this.first === undefined) this.first = chunk;
    else (this.more ??= [this.first]).push(chunk);
    if (this.received >= FRAME_HEADER_BYTES) {
      // Checked as data arrives, so nothing larger than one allowed message is ever buffered.
      const declared = this.declaredLength();
      if (declared > this.environment.maxMessageBytes) {
        this.answerStatus(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${declared} vs ${this.environment.maxMessageBytes})`);
      } else if (this.received > FRAME_HEADER_BYTES + declared) {
        this.answerStatus(grpc.status.UNIMPLEMENTED, `Received a second request message for unary method ${this.route.path}`);
      }
    }
    return !this.finished;
  }

  /** Answers with an error status before the request is complete (the transport's limits). */
  refuse(code: grpc.status, details: string): void {
    this.answerStatus(code, details);
  }

  /** The length prefix of the first message (needs 5 bytes received). */
  private declaredLength(): number {
    const head = this.first!.length >= FRAME_HEADER_BYTES ? this.first! : Buffer.concat(this.more ?? [this.first!]);
    return head.readUInt32BE(1);
  }

  end(): void {
    if (this.finished) return;
    const body = this.more === undefined ? this.first : Buffer.concat(this.more, this.received);
    this.first = undefined;
    this.more = undefined;
    const { path } = this.route;
    if (body === undefined || body.length === 0) {
      this.answerStatus(grpc.status.UNIMPLEMENTED, `Received no request message for unary method ${path}`);
      return;
    }
    if (body.length < FRAME_HEADER_BYTES) {
      this.answerStatus(grpc.status.INTERNAL, `Received an incomplete message for ${path}`);
      return;
    }
    if (body[0] !== 0) {
      this.answerStatus(grpc.status.INTERNAL, `Received a compressed message for ${path} without a grpc-encoding`);
      return;
    }
    const length = body.readUInt32BE(1);
    const end = FRAME_HEADER_BYTES + length;
    if (body.length < end) {
      this.answerStatus(grpc.status.INTERNAL, `Received an incomplete message for ${path}`);
      return;
    }
    if (body.length > end) {
      this.answerStatus(grpc.status.UNIMPLEMENTED, `Received a second request message for unary method ${path}`);
      return;
    }
    try {
      this.request = this.route.deserialize(body.subarray(FRAME_HEADER_BYTES, end));
    } catch (error) {
      this.answerStatus(grpc.status.INTERNAL, `Error deserializing request: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    this.run();
  }

  private run(): void {
    const { route } = this;
    const parent = propagation.extract(ROOT_CONTEXT, this.requestHeaders(), defaultTextMapGetter);
    const span = tracer.startSpan(
      route.spanName,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.method': route.method, 'rpc.service': route.service } },
      parent,
    );
    this.span = span;
    const active = isSpanContextValid(span.spanContext()) ? trace.setSpan(parent, span) : parent;
    let answer: Promise<unknown>;
    try {
      answer = context.with(active, route.handler, undefined, this.request, this as unknown as grpc.ServerUnaryCall<unknown, unknown>);
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer
      .then(
        (response) => this.answer(response),
        (error: unknown) => this.fail(error),
      )
      .catch((error: unknown) => this.broken(error));
  }

  /**
   * Writing the answer itself failed (a header value Node refuses, a stream that went away in a way
   * the checks did not see): nothing more can be said on this stream, so it is reset, and the
   * process goes on.
   */
  private broken(error: unknown): void {
    this.environment.logFailure(this.route.path, error instanceof Error ? error : new Error(String(error)));
    this.resetStream();
    if (!this.finished) this.finish(grpc.status.INTERNAL, 'answering the call failed');
  }

  private answer(response: unknown): void {
    if (this.finished) return;
    let bytes: Buffer;
    try {
      bytes = this.route.serialize(response);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (bytes.length > this.environment.maxMessageBytes) {
      this.answerStatus(grpc.status.RESOURCE_EXHAUSTED, `Sent message larger than max (${bytes.length} vs. ${this.environment.maxMessageBytes})`);
      return;
    }
    if (!this.answerable()) return;
    try {
      this.writeAnswer(bytes);
    } catch (error) {
      this.broken(error);
      return;
    }
    this.finish(grpc.status.OK, '');
  }

  private fail(error: unknown): void {
    if (isUnexpectedError(error)) {
      const err = error instanceof Error ? error : new Error(`non-Error thrown: ${String(error)}`);
      this.environment.logFailure(this.route.path, err);
      this.span?.recordException(err);
    }
    if (this.finished) return;
    const status = toStatusObject(error);
    this.answerStatus(status.code, status.details, status.metadata);
  }

  /** A trailers-only answer: the status, its message and any trailing metadata. */
  protected answerStatus(code: grpc.status, details: string, metadata?: grpc.Metadata | null): void {
    if (this.finished) return;
    if (this.answerable()) {
      const fields = [...RESPONSE_HEADER_LIST];
      for (const [name, value] of Object.entries(metadata?.toHttp2Headers() ?? {})) {
        for (const one of Array.isArray(value) ? value : [value]) if (one !== undefined) fields.push(name, String(one));
      }
      fields.push('grpc-status', String(code), 'grpc-message', encodeGrpcMessage(details));
      try {
        this.writeStatus(fields);
      } catch (error) {
        this.broken(error);
        return;
      }
    }
    this.finish(code, details);
  }

  deadlineReached(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.answerStatus(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded');
    this.over();
  }

  /** The stream is gone: answered, or the client left (RST_STREAM, a lost connection). */
  closed(): void {
    if (!this.finished) this.finish(this.deadline <= Date.now() ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED, 'call cancelled');
    this.over();
  }

  private over(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }

  private finish(code: grpc.status, details: string): void {
    this.finished = true;
    // Whatever arrived of the request is not needed any more.
    this.first = undefined;
    this.more = undefined;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.environment.meter(this.route, code, (performance.now() - this.startedAt) / 1000);
    const span = this.span;
    if (span !== undefined) {
      if (code === grpc.status.OK) {
        span.setStatus({ code: SpanStatusCode.UNSET });
        span.setAttribute('rpc.grpc.status_code', 0);
      } else {
        span.setStatus({ code: SpanStatusCode.ERROR, message: details });
        span.setAttributes({ 'grpc.error_name': 'Error', 'grpc.error_message': details, 'rpc.grpc.status_code': code });
      }
      span.end();
    }
  }
}

/** A direct call on a node:http2 stream. */
class NodeUnaryCall extends UnaryCall {
  constructor(
    route: DirectRoute,
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    environment: DirectCallEnvironment,
  ) {
    super(route, environment);
  }

  override start(): void {
    const { stream } = this;
    (stream as StreamWithCall)[CALL] = this;
    stream.on('error', ignoreError);
    // on(), not once(): each fires once anyway, and once() wraps the listener in a new closure.
    stream.on('close', onStreamClose);
    // Read from the start, also when the call is refused: a stream whose request is never read to
    // its end never closes.
    stream.on('data', onStreamData);
    stream.on('end', onStreamEnd);
    super.start();
  }

  protected requestHeaders(): IncomingHttpHeaders {
    return this.headers;
  }

  protected answerable(): boolean {
    return !this.stream.destroyed && !this.stream.headersSent;
  }

  protected writeAnswer(message: Buffer): void {
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, FRAME_HEADER_BYTES);
    const { stream } = this;
    stream.respond(RESPONSE_HEADER_LIST, RESPOND_WITH_TRAILERS);
    stream.on('wantTrailers', sendOkTrailers);
    stream.end(frame);
  }

  protected writeStatus(fields: string[]): void {
    this.stream.respond(fields, { endStream: true });
  }

  protected resetStream(): void {
    if (!this.stream.destroyed) this.stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
  }

  getPeer(): string {
    const socket = this.stream.session?.socket;
    if (socket?.remoteAddress === undefined) return 'unknown';
    return socket.remotePort === undefined ? socket.remoteAddress : `${socket.remoteAddress}:${socket.remotePort}`;
  }
}
