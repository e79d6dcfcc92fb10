// The gRPC server kit: adapts async handlers to grpc-js, maps errors to statuses at the edge, and
// gives every process health, reflection and graceful shutdown.
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import http2, { type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import net, { isIP, type Socket } from 'node:net';
import tlsModule from 'node:tls';
import { constants as osConstants } from 'node:os';
import { duplexPair } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatusMap } from 'grpc-health-check';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, descriptorSetPath } from '@concord/proto';
import { isUnexpectedError, toStatusObject } from './errors.js';
import { createLogger, type Logger } from './logging.js';
import { LATENCY_BUCKETS_SECONDS, processMetrics, type HotCounterChild, type HotHistogramChild, type Metrics } from './metrics.js';
import { flushTelemetry } from './telemetry.js';
import { serverTlsOptions, type TlsMaterial } from './tls.js';
import { DIRECT_HANDLER, directRoutes, isPlainGrpc, serveDirectUnary, type DirectCallEnvironment, type DirectHandler, type DirectRoute } from './direct-unary.js';
import { rawDescriptorPackage, splitFileDescriptorSet } from './reflection-descriptors.js';
import { LeanSession, type LeanSessionOptions } from './h2/lean-session.js';

/** An async unary handler; throw ServiceError for expected failures. */
export type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;
/** An async server-streaming handler: yields the messages to send, in order. */
export type ServerStreamHandler<Req, Res> = (request: Req, call: grpc.ServerWritableStream<Req, Res>) => AsyncIterable<Res>;

export { MAX_MESSAGE_BYTES };

/**
 * Channel options a client of a Concord server should use (the SDK's CHANNEL_OPTIONS, from
 * @concord/proto): message sizes matching the server, and reconnection attempts at most a second
 * apart.
 */
export const CLIENT_CHANNEL_OPTIONS: Readonly<grpc.ChannelOptions> = CHANNEL_OPTIONS;

const DEFAULT_SHUTDOWN_GRACE_MS = 5000;

/** The logger handlers' unexpected errors go to: the one given to the last ConcordServer.start. */
let kitLogger: Logger | undefined;

function handlerLogger(): Logger {
  kitLogger ??= createLogger({ service: 'concord' });
  return kitLogger;
}

/** Sets the logger unexpected handler errors are written to (ConcordServer.start does this). */
export function setHandlerLogger(logger: Logger): void {
  kitLogger = logger;
}

/** What every kind of grpc-js server call has (unary, server/client/bidi streams). */
export interface ServerCall {
  readonly cancelled: boolean;
  getDeadline(): grpc.Deadline;
  getPath(): string;
  once(event: 'cancelled', listener: () => void): unknown;
}
type AnyServerCall = ServerCall;

const signals = new WeakMap<object, AbortSignal>();

/**
 * An AbortSignal that fires when the call is cancelled by the client, its deadline passes or the
 * server is forced down; pass it to storage or downstream calls so abandoned work stops early.
 * grpc-js also emits 'cancelled' after a call has finished normally, so the signal fires then too.
 */
export function callSignal(call: ServerCall): AbortSignal {
  const existing = signals.get(call);
  if (existing !== undefined) return existing;
  const controller = new AbortController();
  const abort = (): void => controller.abort(new Error('call cancelled'));
  if (call.cancelled) abort();
  else call.once('cancelled', abort);
  signals.set(call, controller.signal);
  return controller.signal;
}

function deadlineMs(call: AnyServerCall): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** Whether no answer should be written: the client is gone or grpc-js already sent DEADLINE_EXCEEDED. */
function callIsOver(call: AnyServerCall): boolean {
  return call.cancelled || deadlineMs(call) <= Date.now();
}

/**
 * Logs a failure the client only sees as INTERNAL, with its stack, and marks the active span
 * (the gRPC server span) as failed. Expected failures (ServiceError, relayed statuses) are part of
 * the API: the instrumentation records their status code, and they are not logged here.
 */
function reportFailure(call: AnyServerCall, error: unknown): void {
  if (!isUnexpectedError(error)) return;
  const err = error instanceof Error ? error : new Error(`non-Error thrown: ${String(error)}`);
  handlerLogger().error({ err, method: call.getPath() }, 'handler failed');
  const span = trace.getActiveSpan();
  if (span !== undefined) {
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  }
}

/** Adapts an async handler to grpc-js: maps errors to status, skips answering cancelled/expired calls. */
export function unary<Req, Res>(handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  const adapted: grpc.handleUnaryCall<Req, Res> = (call, callback) => {
    const anyCall = call as AnyServerCall;
    (async () => {
      let response: Res;
      try {
        // Awaited inside try, so a handler that throws synchronously is handled the same way.
        response = await handler(call.request, call);
      } catch (error) {
        reportFailure(anyCall, error);
        if (!callIsOver(anyCall)) callback(toStatusObject(error));
        return;
      }
      if (!callIsOver(anyCall)) callback(null, response);
    })().catch((error: unknown) => handlerLogger().error({ err: error, method: call.getPath() }, 'answering the call failed'));
  };
  // ConcordServer answers the method itself, without grpc-js (direct-unary.ts).
  return Object.assign(adapted, { [DIRECT_HANDLER]: handler as DirectHandler });
}

/**
 * The async handler under a grpc-js handler made by unary(), or undefined for any other handler. A
 * wrapper (the coordinator's forwarder) that hands calls on to such a handler can itself be made
 * with unary(), so that ConcordServer keeps answering the method directly.
 */
export function unaryHandlerOf<Req, Res>(handler: grpc.handleUnaryCall<Req, Res>): UnaryHandler<Req, Res> | undefined {
  return (handler as { [DIRECT_HANDLER]?: UnaryHandler<Req, Res> })[DIRECT_HANDLER];
}

/** Adapts an async-iterable handler to grpc-js with backpressure and error mapping. */
export function serverStream<Req, Res>(handler: ServerStreamHandler<Req, Res>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const anyCall = call as AnyServerCall;
    (async () => {
      const signal = callSignal(anyCall);
      for await (const message of handler(call.request, call)) {
        // Leaving the loop runs the generator's `finally` blocks, releasing what it holds.
        if (callIsOver(anyCall)) return;
        if (!call.write(message)) await drained(call, signal);
        if (callIsOver(anyCall)) return;
      }
      if (!callIsOver(anyCall)) call.end();
    })()
      .catch((error: unknown) => {
        reportFailure(anyCall, error);
        if (!callIsOver(anyCall)) {
          const statusObject = toStatusObject(error);
          // grpc-js sends a stream's final status from the 'error' event (see ServerWritableStreamImpl).
          call.emit('error', Object.assign(new Error(statusObject.details), statusObject));
        }
      })
      .catch((error: unknown) => handlerLogger().error({ err: error, method: call.getPath() }, 'answering the call failed'));
  };
}

/** Resolves on 'drain', or when the call ends first (a cancelled stream never drains). */
function drained(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export interface ServiceBinding {
  /** Fully qualified name, e.g. "concord.v1.KV" (used for health status). */
  name: string;
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

export interface ConcordServerOptions {
  /** Interface to bind; Concord binds 127.0.0.1 locally. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  services: ServiceBinding[];
  logger: Logger;
  /** How long SIGTERM waits for calls in flight before forcing shutdown. Default 5000 ms. */
  shutdownGraceMs?: number;
  /** Where the concord_grpc_server_* metrics go; default the process's registry. */
  metrics?: Metrics;
  /**
   * Mutual TLS (see tls.ts): present `cert` and accept only clients presenting a certificate
   * signed by `ca`. Health and reflection are served the same way. Default plaintext.
   */
  tls?: TlsMaterial;
  /**
   * For HTTP/2 conformance tests only: the path of a unary() method of `services` that answers
   * every well-formed request of every connection (LeanSessionOptions.testRoute). Never set in
   * production.
   */
  http2TestRoute?: string;
}

// --- Metrics ----------------------------------------------------------------------------------
// Recorded by a server interceptor rather than inside unary()/serverStream(): the coordinator's
// forwarder wraps those adapters, so calls a follower forwards or refuses never reach them, and
// grpc-js answers an expired deadline itself. The interceptor sees every call and the status that
// was really sent.

/**
 * Services whose calls are not counted: health probes come every few seconds, reflection is
 * tooling, and the consensus peer streams live as long as the process (concord_raft_* cover them).
 */
const UNMETERED_SERVICES: ReadonlySet<string> = new Set([
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
  'concord.v1.Consensus',
]);

/** The canonical name of each status code ("OK", "NOT_FOUND", ...), as the metrics' `code` label. */
const STATUS_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(grpc.status).flatMap(([name, code]) => (typeof code === 'number' ? [[code, name] as const] : [])),
);

function statusName(code: number): string {
  return STATUS_NAMES.get(code) ?? String(code);
}

/** "/concord.v1.KV/Put" → ["concord.v1.KV", "Put"]. */
function splitMethodPath(path: string): [service: string, method: string] {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? ['unknown', path.replace(/^\//, '')] : [path.slice(1, slash), path.slice(slash + 1)];
}

/**
 * concord_grpc_server_handled_total and concord_grpc_server_handling_seconds, with the children of
 * each method kept by its path: recording a call allocates nothing (HotCounter, HotHistogram).
 */
class CallMeter {
  private readonly handled;
  private readonly seconds;
  private readonly byPath = new Map<string, { service: string; method: string; seconds: HotHistogramChild; handled: (HotCounterChild | undefined)[] }>();

  constructor(metrics: Metrics) {
    this.handled = metrics.hotCounter({
      name: 'concord_grpc_server_handled_total',
      help: 'gRPC calls this server completed, by service, method and status code.',
      labelNames: ['service', 'method', 'code'],
    });
    this.seconds = metrics.hotHistogram({
      name: 'concord_grpc_server_handling_seconds',
      help: 'Time from a call reaching this server to its status being sent (a stream: its whole life), by service and method.',
      labelNames: ['service', 'method'],
      buckets: LATENCY_BUCKETS_SECONDS,
    });
  }

  /** `path` is the method's "/service/method". */
  record(path: string, service: string, method: string, code: number, seconds: number): void {
    let meters = this.byPath.get(path);
    if (meters === undefined) {
      meters = { service, method, seconds: this.seconds.child({ service, method }), handled: [] };
      this.byPath.set(path, meters);
    }
    let handled = meters.handled[code];
    if (handled === undefined) {
      handled = this.handled.child({ service, method, code: statusName(code) });
      meters.handled[code] = handled;
    }
    handled.inc();
    meters.seconds.observe(seconds);
  }
}

/** Counts every call grpc-js serves with its final status and times it, from its arrival to that status. */
function meteringInterceptor(meter: CallMeter): grpc.ServerInterceptor {
  return (methodDescriptor, call) => {
    const [service, method] = splitMethodPath(methodDescriptor.path);
    if (UNMETERED_SERVICES.has(service)) return new grpc.ServerInterceptingCall(call);
    const started = performance.now();
    let recorded = false;
    const record = (code: number): void => {
      if (recorded) return;
      recorded = true;
      meter.record(methodDescriptor.path, service, method, code, (performance.now() - started) / 1000);
    };
    return new grpc.ServerInterceptingCall(call, {
      // grpc-js reports every call as cancelled once it is over. Before a status went out that
      // means the client left, or the deadline passed and grpc-js answered DEADLINE_EXCEEDED itself.
      start: (next) =>
        next({
          onCancel: () => {
            const deadline = call.getDeadline();
            const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
            record(deadlineMs <= Date.now() ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED);
          },
        }),
      sendStatus: (status, next) => {
        record(status.code);
        next(status);
      },
    });
  };
}

const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

let reflectionPackage: PackageDefinition | undefined;

/** The descriptors reflection serves: every Concord proto plus grpc.health.v1, parsed once per process. */
function reflectionPackageDefinition(): PackageDefinition {
  reflectionPackage ??= {
    ...rawDescriptorPackage('concord.descriptors', splitFileDescriptorSet(readFileSync(descriptorSetPath))),
    ...loadSync(healthProtoPath),
  };
  return reflectionPackage;
}

/** "host:port", with brackets around an IPv6 literal. */
function joinHostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Options of the HTTP/2 server, as grpc-js sets them for its own: no limit on the header block a
 * server sends, and session memory left to the messages' own limits (Node's default of 10 MB
 * makes busy sessions fail with ENHANCE_YOUR_CALM instead of slowing down).
 */
const HTTP2_SERVER_OPTIONS = { maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER, maxSessionMemory: Number.MAX_SAFE_INTEGER } as const;

type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

/**
 * grpc-js's handler of one incoming stream, for the streams ConcordServer does not answer itself.
 * grpc-js offers no public way to serve streams of an HTTP/2 server it did not create, so this uses
 * the method its own servers are wired to (`Server._streamHandler`, grpc-js 1.10 to 1.14, the
 * version package-lock.json pins). Every server test goes through it; should an upgrade remove it,
 * starting a server fails here, saying why.
 */
function grpcJsStreamHandler(server: grpc.Server): StreamHandler {
  const candidate = (server as unknown as { _streamHandler?: (interceptors: readonly unknown[], stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void })
    ._streamHandler;
  if (typeof candidate !== 'function') {
    throw new Error('this version of @grpc/grpc-js has no Server._streamHandler, which ConcordServer hands streams to; use the version package-lock.json pins');
  }
  return (stream, headers) => candidate.call(server, [], stream, headers);
}

function createHttp2Server(tls: TlsMaterial | undefined): Http2Server {
  if (tls === undefined) return http2.createServer(HTTP2_SERVER_OPTIONS);
  return http2.createSecureServer({ ...HTTP2_SERVER_OPTIONS, ...serverTlsOptions(tls) });
}

/**
 * What listens: a TCP server (or a TLS one, mutual and with "h2" negotiated by ALPN) whose
 * connections start in the lean server (h2/lean-session.ts), which keeps the ones that call direct
 * unary methods and hands the others to `http2Server`, as if they had just arrived there.
 */
function createFrontServer(tls: TlsMaterial | undefined, http2Server: Http2Server, startSession: (socket: Socket, handOff: (socket: Socket) => void) => void): net.Server {
  if (tls === undefined) {
    const handOff = (socket: Socket): void => void http2Server.emit('connection', socket);
    return net.createServer({ noDelay: true }, (socket) => startSession(socket, handOff));
  }
  const handOff = (socket: Socket): void => void http2Server.emit('secureConnection', socket);
  // noDelay as for plaintext: with Nagle's algorithm a small answer could wait for the client's
  // delayed acknowledgement (up to 40 ms on Linux) of the answer before it.
  const server = tlsModule.createServer({ ...serverTlsOptions(tls), ALPNProtocols: ['h2'], noDelay: true }, (socket) => {
    // A connection that breaks is the client's problem, not the server's.
    socket.on('error', () => undefined);
    // Without "h2" agreed (a client that offered no ALPN), node:http2 decides what to do with it.
    if (socket.alpnProtocol !== 'h2') handOff(socket);
    else startSession(socket, handOff);
  });
  server.on('tlsClientError', () => undefined);
  return server;
}

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(new Error(`cannot listen on ${joinHostPort(host, port)}: ${error.message}`, { cause: error }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

/**
 * The addresses to listen on for `host`: itself when it is an IP address, else every address the
 * name resolves to (as grpc-js binds a name: "localhost" is 127.0.0.1 and ::1).
 */
async function listenAddresses(host: string): Promise<string[]> {
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0) return [host.replace(/^\[|\]$/g, '')];
  let resolved: { address: string }[];
  try {
    resolved = await lookup(host, { all: true });
  } catch (error) {
    throw new Error(`cannot listen on ${host}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return [...new Set(resolved.map(({ address }) => address))];
}

/**
 * A gRPC server with health (grpc.health.v1), reflection and Concord's error mapping. It owns the
 * HTTP/2 server: unary methods made with unary() are answered directly (direct-unary.ts), every
 * other stream by grpc-js.
 */
export class ConcordServer {
  private shutdownPromise: Promise<void> | undefined;

  private constructor(
    readonly port: number,
    readonly address: string,
    private readonly server: grpc.Server,
    private readonly frontServers: readonly net.Server[],
    private readonly sessions: Set<Http2Session>,
    private readonly leanSessions: Set<LeanSession>,
    private readonly health: HealthImplementation,
    private readonly serviceNames: readonly string[],
    private readonly logger: Logger,
    private readonly shutdownGraceMs: number,
  ) {}

  static async start(options: ConcordServerOptions): Promise<ConcordServer> {
    setHandlerLogger(options.logger);
    const metrics = options.metrics ?? processMetrics();
    const meter = new CallMeter(metrics);
    const connections = metrics.counter({
      name: 'concord_grpc_server_connections_total',
      help: 'Connections accepted, by what serves them: the lean HTTP/2 server (their first call was a direct unary method) or node:http2 with grpc-js.',
      labelNames: ['served_by'],
    });
    const server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // Statistics for a channelz service Concord does not serve; the sessions are tracked here.
      'grpc.enable_channelz': 0,
      interceptors: [meteringInterceptor(meter)],
    });
    for (const binding of options.services) server.addService(binding.definition, binding.implementation);

    const serviceNames = options.services.map((binding) => binding.name);
    const initialStatus: ServingStatusMap = { '': 'SERVING' };
    for (const name of serviceNames) initialStatus[name] = 'SERVING';
    const health = new HealthImplementation(initialStatus);
    health.addToServer(server);
    // Reflection lists only what this server really serves (`grpcurl list`), not every Concord service.
    new ReflectionService(reflectionPackageDefinition(), { services: [...serviceNames, HEALTH_SERVICE_NAME] }).addToServer(server);

    const routes = directRoutes(options.services);
    const environment: DirectCallEnvironment = {
      maxMessageBytes: MAX_MESSAGE_BYTES,
      meter: (route: DirectRoute, code, seconds) => {
        if (!UNMETERED_SERVICES.has(route.service)) meter.record(route.path, route.service, route.method, code, seconds);
      },
      logFailure: (path, err) => handlerLogger().error({ err, method: path }, 'handler failed'),
    };
    const viaGrpcJs = grpcJsStreamHandler(server);
    const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
      const route = routes.get(headers[':path'] ?? '');
      if (route !== undefined && isPlainGrpc(headers)) serveDirectUnary(route, stream, headers, environment);
      else viaGrpcJs(stream, headers);
    };
    const sessions = new Set<Http2Session>();
    const onSession = (session: Http2Session): void => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
      // Errors of a session end it ('close' follows); there is nobody to report them to.
      session.on('error', () => undefined);
    };

    const leanSessions = new Set<LeanSession>();
    // Streams of other methods on lean connections reach grpc-js through this server, in process.
    const internalServer = createHttp2Server(undefined);
    internalServer.on('stream', onStream);
    internalServer.on('session', onSession);
    const testRoute = options.http2TestRoute === undefined ? undefined : routes.get(options.http2TestRoute);
    if (options.http2TestRoute !== undefined && testRoute === undefined) throw new Error(`http2TestRoute ${options.http2TestRoute} is not a unary() method of the services`);
    const leanOptions: Omit<LeanSessionOptions, 'handOff'> = {
      routes,
      ...(testRoute === undefined ? {} : { testRoute }),
      environment,
      onEnd: (session) => leanSessions.delete(session),
      onServedBy: (servedBy) => connections.labels({ served_by: servedBy }).inc(),
      connectInternal: () => {
        const [inside, outside] = duplexPair();
        internalServer.emit('connection', outside);
        return inside;
      },
    };
    const startSession = (socket: Socket, handOff: (socket: Socket) => void): void => {
      leanSessions.add(new LeanSession(socket, { ...leanOptions, handOff }));
    };

    // One listener per address; with port 0, the others take the port the first one got. As with
    // grpc-js, a name serves if one of its addresses could be bound (::1 on a host without IPv6 is
    // skipped with a warning).
    const frontServers: net.Server[] = [];
    let port = options.port;
    let firstError: unknown;
    try {
      for (const host of await listenAddresses(options.host)) {
        const http2Server = createHttp2Server(options.tls);
        http2Server.on('stream', onStream);
        http2Server.on('session', onSession);
        const front = createFrontServer(options.tls, http2Server, startSession);
        try {
          port = await listen(front, host, port);
          frontServers.push(front);
        } catch (error) {
          firstError ??= error;
          options.logger.warn({ err: error, host }, 'cannot listen on one of the addresses of the host');
        }
      }
    } catch (error) {
      firstError = error;
    }
    if (frontServers.length === 0) {
      server.forceShutdown();
      throw firstError instanceof Error ? firstError : new Error(`cannot listen on ${options.host}`);
    }
    const address = joinHostPort(options.host, port);
    options.logger.info({ address, services: serviceNames, tls: options.tls !== undefined }, 'gRPC server listening');
    return new ConcordServer(
      port,
      address,
      server,
      frontServers,
      sessions,
      leanSessions,
      health,
      serviceNames,
      options.logger,
      options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    );
  }

  /** Sets the health status of one service ('' = the whole server). */
  setServing(serviceName: string, serving: boolean): void {
    this.health.setStatus(serviceName, serving ? 'SERVING' : 'NOT_SERVING');
  }

  /** Marks NOT_SERVING, stops accepting calls, waits up to the grace period, then forces. */
  async shutdown(): Promise<void> {
    this.shutdownPromise ??= this.stop();
    return this.shutdownPromise;
  }

  private async stop(): Promise<void> {
    // Probes and load balancers see NOT_SERVING first, so new traffic goes elsewhere.
    for (const name of ['', ...this.serviceNames]) this.setServing(name, false);
    // No new connections; every session gets a GOAWAY and closes once its calls have finished.
    const listenerClosed = Promise.all(this.frontServers.map((front) => new Promise<void>((resolve) => front.close(() => resolve()))));
    for (const session of this.sessions) session.close();
    for (const session of this.leanSessions) session.close();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.shutdownGraceMs);
    });
    const finished = await Promise.race([listenerClosed.then(() => true), timedOut]);
    clearTimeout(timer);
    if (!finished) {
      this.logger.warn({ address: this.address, graceMs: this.shutdownGraceMs }, 'calls still running after the grace period; forcing shutdown');
      for (const session of this.sessions) session.destroy();
      for (const session of this.leanSessions) session.destroy();
      await listenerClosed;
    }
    this.server.forceShutdown();
    this.logger.info({ address: this.address }, 'gRPC server stopped');
  }
}

/** How long shutdown waits for the last spans to reach the collector before exiting anyway. */
const TELEMETRY_FLUSH_TIMEOUT_MS = 2000;

/**
 * Runs `handler` once on SIGTERM or SIGINT, flushes telemetry, then exits 0 (1 if the handler
 * throws). A second signal while the handler runs exits at once with 128 + the signal number, as a
 * shell would.
 */
export function onShutdownSignals(handler: () => Promise<void>, logger: Logger): void {
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      logger.warn({ signal }, 'second signal during shutdown; exiting now');
      process.exit(128 + (osConstants.signals[signal] ?? 0));
    }
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    void (async () => {
      let code = 0;
      try {
        await handler();
        logger.info('shutdown complete');
      } catch (error) {
        logger.error({ err: error }, 'shutdown failed');
        code = 1;
      }
      await flushTelemetry(TELEMETRY_FLUSH_TIMEOUT_MS);
      process.exit(code);
    })();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
