// The lean HTTP/2 server: connections whose calls are the unary methods Concord answers directly,
// served without node:http2.
//
// Why: on a busy Raft leader, what is left of a put's cost after the direct path (direct-unary.ts)
// is mostly node:http2's own per-stream work and garbage: an Http2Stream with its Duplex state, the
// header objects Node builds, and an external string for every incoming header value, created in
// the old generation, which V8 walks at every full collection (docs/performance.md). Here a call is
// a plain object on a connection that parses its own frames; headers a client repeats come from
// the HPACK dynamic table as the same strings every time.
//
// Which connections: every connection starts here, "sniffing". The server sends an empty SETTINGS
// frame (a client may wait for the server's SETTINGS before its first request, as grpc-js does),
// answers PINGs and reads up to the first request's headers. If that request is for a direct unary
// method, the connection stays lean for its lifetime. Otherwise (a peer's consensus stream, a
// health check, reflection, a compressed request...) the connection is handed to node:http2 as if
// it had just arrived: the bytes read so far go back into the socket, minus the PINGs already
// answered and the acknowledgement of the SETTINGS sent, and node:http2 and grpc-js serve it as
// before. The hand-off waits for that acknowledgement, so node:http2 never sees it. The client's
// own SETTINGS are acknowledged only once it is decided who serves the connection (node:http2
// acknowledges what it reads), so a client that waits for that acknowledgement before its first
// request is handed off after SNIFF_IDLE_MS of silence.
//
// Conformance: h2spec runs against this file (h2/h2spec.test.ts); docs/architecture.md lists the
// rules it follows.
//
// A lean connection that later carries a request for another method (a Scan after some puts, say)
// relays that stream to node:http2 over an in-process connection, so grpc-js serves it as it would
// any other; only those streams pay for the detour.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { OK_TRAILER_LIST, RESPONSE_HEADER_LIST, UnaryCall, type DirectCallEnvironment, type DirectRoute } from '../direct-unary.js';
import { HpackAnswerEncoder, HpackDecoder, HpackError, encodeFields } from './hpack.js';
import { MalformedHeaders, NO_CONTENT_LENGTH, checkRequestHeaders, checkRequestTrailers } from './request-headers.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;
/** SETTINGS_MAX_FRAME_SIZE this side accepts: the protocol's default, which the empty SETTINGS keep. */
const MAX_FRAME_PAYLOAD = 16_384;
/** The protocol's initial windows (RFC 7540 §6.9.2), which the empty SETTINGS keep. */
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/** The connection's receive window once lean: room for many calls in flight. */
const LEAN_CONNECTION_WINDOW = 16 * 1024 * 1024;
/** A header block (HEADERS and its CONTINUATIONs) larger than this ends the connection. */
const MAX_HEADER_BLOCK = 256 * 1024;
/** Bytes a sniffing connection may buffer before it is handed to node:http2 undecided. */
const MAX_SNIFF_BYTES = 1024 * 1024;
/** How long a hand-off waits for the client to acknowledge the SETTINGS sent. */
const SETTINGS_ACK_TIMEOUT_MS = 10_000;
/** Streams open at once on one lean connection; more are refused (REFUSED_STREAM). */
const MAX_OPEN_STREAMS = 10_000;
/**
 * Bytes of requests not yet complete (their END_STREAM not arrived) that one lean connection may
 * hold, at least two whole messages of the largest size allowed. The connection window is given
 * back as frames are read, so flow control alone would not bound what a client that opens many
 * streams and never ends them makes the server keep; a request whose data would cross this is
 * answered RESOURCE_EXHAUSTED, and the others go on.
 */
export const MAX_HELD_REQUEST_BYTES = 64 * 1024 * 1024;
/**
 * A sniffing connection whose client sent its SETTINGS and then nothing for this long is handed to
 * node:http2, which acknowledges them: a client may wait for that acknowledgement before its first
 * request (RFC 7540 §3.5 allows both), and the sniffer only acknowledges once it has decided.
 */
const SNIFF_IDLE_MS = 200;
/** Closed streams remembered (how they closed decides what a late frame on one means, §5.1). */
const CLOSED_MEMORY = 1024;
/**
 * Streams the client may reset before they are answered: a burst, then so many a second (a token
 * bucket, nghttp2's defaults). Beyond it the connection ends with ENHANCE_YOUR_CALM: opening
 * streams and resetting them at once ("rapid reset", CVE-2023-44487) would otherwise start
 * handlers without bound while the open streams stay few.
 */
const RESET_BURST = 1000;
const RESET_RATE_PER_S = 33;

const enum FrameType {
  DATA = 0,
  HEADERS = 1,
  PRIORITY = 2,
  RST_STREAM = 3,
  SETTINGS = 4,
  PUSH_PROMISE = 5,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const enum ErrorCode {
  NO_ERROR = 0,
  PROTOCOL_ERROR = 1,
  INTERNAL_ERROR = 2,
  FLOW_CONTROL_ERROR = 3,
  STREAM_CLOSED = 5,
  FRAME_SIZE_ERROR = 6,
  REFUSED_STREAM = 7,
  COMPRESSION_ERROR = 9,
  ENHANCE_YOUR_CALM = 11,
}

const SETTINGS_HEADER_TABLE_SIZE = 1;
const SETTINGS_ENABLE_PUSH = 2;
const SETTINGS_INITIAL_WINDOW_SIZE = 4;
const SETTINGS_MAX_FRAME_SIZE = 5;

/** An OK answer's trailers as a literal block, for trailers that wait for a window (see HpackAnswerEncoder). */
const OK_TRAILERS_BLOCK = encodeFields(OK_TRAILER_LIST);

class ConnectionError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function frameHeader(out: Buffer, at: number, length: number, type: FrameType, flags: number, streamId: number): void {
  out[at] = (length >>> 16) & 0xff;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(streamId, at + 5);
}

function frame(type: FrameType, flags: number, streamId: number, payload?: Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER + length);
  frameHeader(out, 0, length, type, flags, streamId);
  if (payload !== undefined) out.set(payload, FRAME_HEADER);
  return out;
}

/** The gRPC length prefix: not compressed, then the message's length. */
const GRPC_PREFIX = 5;

function grpcPrefix(out: Buffer, at: number, length: number): void {
  out[at] = 0;
  out.writeUInt32BE(length, at + 1);
}

function u32Frame(type: FrameType, streamId: number, value: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + 4);
  frameHeader(out, 0, 4, type, 0, streamId);
  out.writeUInt32BE(value, FRAME_HEADER);
  return out;
}

/** What the server lends its lean sessions. */
export interface LeanSessionOptions {
  readonly routes: ReadonlyMap<string, DirectRoute>;
  readonly environment: DirectCallEnvironment;
  /** Serves the socket with node:http2 (its read bytes are back in it). */
  readonly handOff: (socket: Socket) => void;
  /** The session ended (its socket closed), or was handed off. */
  readonly onEnd: (session: LeanSession) => void;
  /** Once per connection, when it is known what serves it. */
  readonly onServedBy: (servedBy: 'lean' | 'node_http2') => void;
  /** A new in-process connection to node:http2, for streams of other methods on a lean connection. */
  readonly connectInternal: () => Duplex;
  /**
   * For HTTP/2 conformance tests only: every well-formed request is answered by this route, and a
   * client that waits for its SETTINGS to be acknowledged gets a lean connection rather than
   * node:http2, so that a conformance suite exercises this file's frame and stream handling.
   */
  readonly testRoute?: DirectRoute;
}

type State = 'sniffing' | 'awaiting-ack' | 'lean' | 'handed-off' | 'closed';

/** One connection: sniffing, then lean or handed to node:http2. */
export class LeanSession {
  private state: State = 'sniffing';
  private remainder: Buffer | undefined;
  /** While sniffing: every byte read, and the ranges (absolute offsets) node:http2 must not see. */
  private raw: Buffer[] | undefined = [];
  /** Bytes read from the socket so far. */
  private received = 0;
  /** Offsets count from the first byte the client sent. */
  private readonly strip: [number, number][] = [];
  private prefaceSeen = false;
  private settingsAcked = false;
  private unackedClientSettings = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly decoder = new HpackDecoder();
  /** This side's dynamic table, in the client's decoder (answers' content-type and grpc-status). */
  private readonly hpack = new HpackAnswerEncoder();
  /** A header block split over CONTINUATION frames, while it is incomplete. */
  private headerBlock: { parts: Buffer[]; bytes: number } | undefined;
  /** The header block last completed: its stream, END_STREAM flag and fields. */
  private blockStreamId = 0;
  private blockEndStream = false;
  /** Whether the block's priority made its stream depend on itself (a stream error, §5.3.1). */
  private blockSelfDependent = false;
  private blockFields: string[] = [];
  private readonly streams = new Map<number, LeanStream>();
  private lastStreamId = 0;
  /** The last CLOSED_MEMORY streams closed, as a ring, and whether this side reset each. */
  private closedIds: Int32Array | undefined;
  private closedByReset: Uint8Array | undefined;
  private closedNext = 0;
  /** The rapid-reset bucket: tokens left, and when it was last refilled (performance.now()). */
  private resetTokens = RESET_BURST;
  private resetRefilledAt = 0;
  /** Set once GOAWAY is sent: streams above it are ignored. */
  private goAwayLastId: number | undefined;
  private peerGoneAway = false;
  // Flow control (RFC 7540 §6.9).
  private connectionSendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME_PAYLOAD;
  private connectionReceiveWindow = DEFAULT_WINDOW;
  private connectionReceiveAvailable = DEFAULT_WINDOW;
  /** Bytes the calls of this connection hold of requests not yet complete (see MAX_HELD_REQUEST_BYTES). */
  private heldRequestBytes = 0;
  /** MAX_HELD_REQUEST_BYTES, or two of the largest messages allowed if that is more. */
  private readonly heldRequestLimit: number;
  private readonly blocked = new Set<LeanStream>();
  private internalSession: ClientHttp2Session | undefined;
  private out: Buffer[] = [];
  private flushScheduled = false;
  readonly remote: string;

  constructor(
    private readonly socket: Socket,
    private readonly options: LeanSessionOptions,
  ) {
    this.heldRequestLimit = Math.max(MAX_HELD_REQUEST_BYTES, 2 * options.environment.maxMessageBytes);
    this.remote = socket.remotePort === undefined ? (socket.remoteAddress ?? 'unknown') : `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', () => undefined);
    // The server preface: an empty SETTINGS frame (every setting at the protocol's default, which
    // node:http2 also starts from, so a hand-off changes nothing the client relied on).
    this.write(frame(FrameType.SETTINGS, 0, 0));
    this.flush();
  }

  /** GOAWAY, then the end of the connection once its calls are answered. */
  close(): void {
    if (this.state === 'sniffing' || this.state === 'awaiting-ack') {
      this.socket.destroy();
      return;
    }
    if (this.state !== 'lean') return;
    this.goAway(ErrorCode.NO_ERROR);
    this.maybeEnd();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private readonly onClose = (): void => {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.clearIdleTimer();
    if (this.state === 'handed-off') return;
    this.state = 'closed';
    for (const stream of [...this.streams.values()]) this.closeStream(stream);
    this.internalSession?.destroy();
    this.options.onEnd(this);
  };

  private readonly onData = (chunk: Buffer): void => {
    this.received += chunk.length;
    this.raw?.push(chunk);
    let buffer = chunk;
    if (this.remainder !== undefined) {
      buffer = Buffer.concat([this.remainder, chunk]);
      this.remainder = undefined;
    }
    try {
      this.consume(buffer);
    } catch (error) {
      this.connectionError(error);
    }
    if (this.state === 'sniffing' && this.received > MAX_SNIFF_BYTES) this.decideHandOff();
    if (this.state === 'sniffing') this.armIdleTimer();
    if (this.state === 'lean') this.replenishConnectionWindow();
  };

  /** While sniffing with the client's SETTINGS unacknowledged and no request begun: see SNIFF_IDLE_MS. */
  private armIdleTimer(): void {
    this.clearIdleTimer();
    if (this.unackedClientSettings === 0 || this.headerBlock !== undefined) return;
    this.idleTimer = setTimeout(this.onSniffIdle, SNIFF_IDLE_MS);
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer === undefined) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private readonly onSniffIdle = (): void => {
    this.idleTimer = undefined;
    if (this.state !== 'sniffing') return;
    // Timers run before the event loop polls for I/O: after a stall of this process, the request
    // may be waiting in the socket already. Decide only once the poll has delivered what came.
    const received = this.received;
    setImmediate(() => {
      if (this.state === 'sniffing' && this.received === received) this.sniffIdle();
    });
  };

  private sniffIdle(): void {
    if (this.options.testRoute !== undefined) {
      this.becomeLean();
      this.scheduleFlush();
    } else {
      this.decideHandOff();
    }
  }

  private consume(buffer: Buffer): void {
    // Where `buffer` starts in what the client sent (it is the unparsed rest plus what just came).
    const base = this.received - buffer.length;
    let pos = 0;
    if (!this.prefaceSeen) {
      if (buffer.length < PREFACE.length) {
        if (!PREFACE.subarray(0, buffer.length).equals(buffer)) return this.notHttp2();
        this.remainder = buffer;
        return;
      }
      if (!buffer.subarray(0, PREFACE.length).equals(PREFACE)) return this.notHttp2();
      this.prefaceSeen = true;
      pos = PREFACE.length;
    }
    while (buffer.length - pos >= FRAME_HEADER) {
      const length = (buffer[pos]! << 16) | (buffer[pos + 1]! << 8) | buffer[pos + 2]!;
      if (length > MAX_FRAME_PAYLOAD) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `a frame of ${length} bytes, above ${MAX_FRAME_PAYLOAD}`);
      const end = pos + FRAME_HEADER + length;
      if (end > buffer.length) break;
      const type = buffer[pos + 3]!;
      const flags = buffer[pos + 4]!;
      const streamId = buffer.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = buffer.subarray(pos + FRAME_HEADER, end);
      if (this.state === 'lean') this.leanFrame(type, flags, streamId, payload);
      else this.sniffFrame(type, flags, streamId, payload, base + pos, base + end);
      pos = end;
      if (this.state === 'handed-off' || this.state === 'closed') return;
    }
    if (pos < buffer.length) this.remainder = buffer.subarray(pos);
  }

  /** Not an HTTP/2 client preface: node:http2 answers it as it would have. */
  private notHttp2(): void {
    this.handOffNow();
  }

  // ------------------------------------------------------------------------------- sniffing

  private sniffFrame(type: number, flags: number, streamId: number, payload: Buffer, start: number, end: number): void {
    switch (type) {
      case FrameType.SETTINGS:
        // A malformed one throws: the connection goes to node:http2, which answers the fault.
        if ((flags & FLAG_ACK) !== 0) {
          this.checkSettingsAck(streamId, payload);
          this.settingsAcked = true;
          this.strip.push([start, end]);
          if (this.state === 'awaiting-ack') this.handOffNow();
          return;
        }
        this.applySettings(streamId, payload);
        this.unackedClientSettings++;
        return;
      case FrameType.PING:
        this.checkPing(streamId, payload);
        if ((flags & FLAG_ACK) === 0) {
          this.write(frame(FrameType.PING, FLAG_ACK, 0, payload));
          this.flush();
          this.strip.push([start, end]);
        }
        return;
      case FrameType.WINDOW_UPDATE:
        if (streamId === 0 && payload.length === 4) this.connectionSendWindow += payload.readUInt32BE(0) & 0x7fffffff;
        return;
      case FrameType.PRIORITY:
        // Ignored, unless malformed: then node:http2 answers it.
        if (streamId === 0 || payload.length !== 5 || (payload.readUInt32BE(0) & 0x7fffffff) === streamId) this.decideHandOff();
        return;
      case FrameType.HEADERS:
      case FrameType.CONTINUATION:
        if (this.state !== 'sniffing') return;
        this.clearIdleTimer();
        if (this.collectHeaderBlock(type, flags, streamId, payload)) this.decide(this.blockStreamId, this.blockEndStream, this.blockFields);
        return;
      default:
        // DATA before any HEADERS, GOAWAY, RST_STREAM...: node:http2 will make sense of it.
        if (this.state === 'sniffing' && type <= FrameType.CONTINUATION) this.decideHandOff();
    }
  }

  private decide(streamId: number, endStream: boolean, fields: string[]): void {
    let contentLength: number;
    try {
      // A malformed first request goes to node:http2 with the rest, which refuses it its own way.
      contentLength = checkRequestHeaders(fields);
    } catch (error) {
      if (!(error instanceof MalformedHeaders)) throw error;
      this.decideHandOff();
      return;
    }
    const route = this.blockSelfDependent || streamId % 2 === 0 ? undefined : this.routeFor(fields);
    if (route === undefined) {
      this.decideHandOff();
      return;
    }
    this.becomeLean();
    this.openStream(streamId, fields, endStream, route, contentLength);
    this.scheduleFlush();
  }

  /** The connection stays here: the client's SETTINGS acknowledged, the connection window opened. */
  private becomeLean(): void {
    this.clearIdleTimer();
    this.state = 'lean';
    this.raw = undefined;
    this.options.onServedBy('lean');
    for (; this.unackedClientSettings > 0; this.unackedClientSettings--) this.write(frame(FrameType.SETTINGS, FLAG_ACK, 0));
    this.write(u32Frame(FrameType.WINDOW_UPDATE, 0, LEAN_CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.connectionReceiveWindow = LEAN_CONNECTION_WINDOW;
    this.connectionReceiveAvailable += LEAN_CONNECTION_WINDOW - DEFAULT_WINDOW;
  }

  private decideHandOff(): void {
    if (this.settingsAcked) this.handOffNow();
    else if (this.state === 'sniffing') {
      this.state = 'awaiting-ack';
      this.ackTimer = setTimeout(() => this.socket.destroy(), SETTINGS_ACK_TIMEOUT_MS);
      this.ackTimer.unref();
    }
  }

  private handOffNow(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.clearIdleTimer();
    const { socket } = this;
    this.state = 'handed-off';
    socket.off('data', this.onData);
    socket.off('close', this.onClose);
    socket.pause();
    const raw = Buffer.concat(this.raw ?? []);
    this.raw = undefined;
    const kept: Buffer[] = [];
    let at = 0;
    for (const [start, end] of this.strip) {
      kept.push(raw.subarray(at, start));
      at = end;
    }
    kept.push(raw.subarray(at));
    const replay = Buffer.concat(kept);
    if (replay.length > 0) socket.unshift(replay);
    this.options.onEnd(this);
    this.options.onServedBy('node_http2');
    this.options.handOff(socket);
  }

  // ---------------------------------------------------------------------------------- lean

  private routeFor(fields: readonly string[]): DirectRoute | undefined {
    const { testRoute } = this.options;
    if (testRoute !== undefined) return testRoute;
    let path: string | undefined;
    let contentType: string | undefined;
    let encoding: string | undefined;
    let method: string | undefined;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      if (name === ':path') path = fields[i + 1];
      else if (name === 'content-type') contentType = fields[i + 1];
      else if (name === 'grpc-encoding') encoding = fields[i + 1];
      else if (name === ':method') method = fields[i + 1];
    }
    if (path === undefined || method !== 'POST' || contentType === undefined || !contentType.startsWith('application/grpc')) return undefined;
    if (encoding !== undefined && encoding !== 'identity') return undefined;
    return this.options.routes.get(path);
  }

  private leanFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock !== undefined && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a frame inside a header block');
    }
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, streamId, payload);
      case FrameType.HEADERS:
      case FrameType.CONTINUATION:
        if (this.collectHeaderBlock(type, flags, streamId, payload)) this.onHeaders(this.blockStreamId, this.blockEndStream, this.blockFields);
        return;
      case FrameType.PRIORITY:
        return this.onPriority(streamId, payload);
      case FrameType.RST_STREAM: {
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a RST_STREAM not of 4 bytes');
        if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on the idle stream ${streamId}`);
        const stream = this.streams.get(streamId);
        if (stream === undefined) return;
        if (!stream.localClosed) this.countClientReset();
        this.closeStream(stream);
        return;
      }
      case FrameType.SETTINGS:
        if ((flags & FLAG_ACK) !== 0) {
          this.checkSettingsAck(streamId, payload);
          return;
        }
        this.applySettings(streamId, payload);
        this.write(frame(FrameType.SETTINGS, FLAG_ACK, 0));
        this.scheduleFlush();
        this.unblock();
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case FrameType.PING:
        this.checkPing(streamId, payload);
        if ((flags & FLAG_ACK) === 0) {
          this.write(frame(FrameType.PING, FLAG_ACK, 0, payload));
          this.scheduleFlush();
        }
        return;
      case FrameType.GOAWAY:
        this.peerGoneAway = true;
        this.maybeEnd();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
      // Unknown frame types are ignored (RFC 7540 §4.1).
    }
  }

  /**
   * Adds a HEADERS or CONTINUATION frame to the header block in progress; once the block is whole,
   * decodes it into blockFields (with blockStreamId, blockEndStream) and returns true.
   */
  private collectHeaderBlock(type: number, flags: number, streamId: number, payload: Buffer): boolean {
    let fragment = payload;
    if (type === FrameType.HEADERS) {
      if (this.headerBlock !== undefined) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS inside a header block');
      if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
      if ((flags & FLAG_PADDED) !== 0) {
        const pad = fragment[0] ?? 0;
        if (pad >= fragment.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
        fragment = fragment.subarray(1, fragment.length - pad);
      }
      this.blockSelfDependent = false;
      if ((flags & FLAG_PRIORITY) !== 0) {
        if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a HEADERS frame too short for its priority');
        this.blockSelfDependent = (fragment.readUInt32BE(0) & 0x7fffffff) === streamId;
        fragment = fragment.subarray(5);
      }
      this.blockStreamId = streamId;
      this.blockEndStream = (flags & FLAG_END_STREAM) !== 0;
      if ((flags & FLAG_END_HEADERS) !== 0) {
        // The usual case: the whole block in one frame.
        this.blockFields = this.decodeBlock(fragment);
        return true;
      }
      this.headerBlock = { parts: [fragment], bytes: fragment.length };
      return false;
    }
    const block = this.headerBlock;
    if (block === undefined || this.blockStreamId !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a CONTINUATION without its HEADERS');
    block.parts.push(payload);
    block.bytes += payload.length;
    if (block.bytes > MAX_HEADER_BLOCK) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `a header block above ${MAX_HEADER_BLOCK} bytes`);
    if ((flags & FLAG_END_HEADERS) === 0) return false;
    this.headerBlock = undefined;
    this.blockFields = this.decodeBlock(Buffer.concat(block.parts, block.bytes));
    return true;
  }

  private decodeBlock(block: Uint8Array): string[] {
    try {
      return this.decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, error.message);
      throw error;
    }
  }

  private onHeaders(streamId: number, endStream: boolean, fields: string[]): void {
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      if (existing.remoteClosed) {
        this.resetStream(existing, ErrorCode.STREAM_CLOSED);
        return;
      }
      // Trailers from the client: gRPC clients send none, but they end the request all the same.
      if (!endStream || this.blockSelfDependent || !wellFormed(checkRequestTrailers, fields)) {
        this.resetStream(existing, ErrorCode.PROTOCOL_ERROR);
        return;
      }
      this.remoteEnded(existing);
      return;
    }
    if (streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `a client stream with the even id ${streamId}`);
    if (streamId <= this.lastStreamId) {
      const closed = this.closedHow(streamId);
      if (closed === 'reset') return; // frames after a RST_STREAM sent are ignored (§5.1)
      if (closed === 'closed') throw new ConnectionError(ErrorCode.STREAM_CLOSED, `HEADERS on the closed stream ${streamId}`);
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `a new stream ${streamId} not above the last one, ${this.lastStreamId} (§5.1.1)`);
    }
    this.lastStreamId = streamId;
    if (this.goAwayLastId !== undefined) {
      // After GOAWAY, new streams are ignored (§6.8), and so are their frames in flight.
      this.rememberClosed(streamId, true);
      return;
    }
    let contentLength = NO_CONTENT_LENGTH;
    try {
      if (this.blockSelfDependent) throw new MalformedHeaders('a stream that depends on itself');
      contentLength = checkRequestHeaders(fields);
    } catch (error) {
      if (!(error instanceof MalformedHeaders)) throw error;
      this.refuseStream(streamId, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (this.streams.size >= MAX_OPEN_STREAMS) {
      this.refuseStream(streamId, ErrorCode.REFUSED_STREAM);
      return;
    }
    const route = this.routeFor(fields);
    if (route === undefined) {
      this.relay(streamId, fields, endStream, contentLength);
      return;
    }
    this.openStream(streamId, fields, endStream, route, contentLength);
  }

  /** Resets a stream that was never opened here. */
  private refuseStream(streamId: number, code: ErrorCode): void {
    this.write(u32Frame(FrameType.RST_STREAM, streamId, code));
    this.scheduleFlush();
    this.rememberClosed(streamId, true);
  }

  private openStream(streamId: number, fields: string[], endStream: boolean, route: DirectRoute, contentLength: number): void {
    this.lastStreamId = streamId;
    const stream = new LeanStream(this, streamId, this.peerInitialWindow);
    stream.contentLength = contentLength;
    this.streams.set(streamId, stream);
    const call = new LeanUnaryCall(route, this.options.environment, stream, fields, this.remote);
    stream.call = call;
    call.start();
    if (endStream) this.remoteEnded(stream);
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole payload, padding included.
    this.connectionReceiveAvailable -= payload.length;
    if (this.connectionReceiveAvailable < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    let data = payload;
    if ((flags & FLAG_PADDED) !== 0) {
      const pad = data[0] ?? 0;
      if (pad >= data.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
      data = data.subarray(1, data.length - pad);
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on the idle stream ${streamId}`);
      // On a stream this side reset (or long gone), DATA in flight is ignored; on one that closed
      // otherwise, it is a stream error (§5.1).
      if (this.closedHow(streamId) === 'closed') this.refuseStream(streamId, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (stream.remoteClosed) {
      this.resetStream(stream, ErrorCode.STREAM_CLOSED);
      return;
    }
    stream.receiveAvailable -= payload.length;
    if (stream.receiveAvailable < 0) {
      this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    stream.bodyBytes += data.length;
    if (stream.contentLength !== NO_CONTENT_LENGTH && stream.bodyBytes > stream.contentLength) {
      this.resetStream(stream, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (data.length > 0) {
      const { relayed } = stream;
      if (relayed === undefined) this.deliver(stream, data);
      else if (!relayed.write(data) && !stream.awaitingDrain) {
        // node:http2 has not taken the data yet: the client gets more window once it has.
        stream.awaitingDrain = true;
        relayed.once('drain', () => {
          stream.awaitingDrain = false;
          this.replenishStreamWindow(stream);
        });
      }
    }
    if ((flags & FLAG_END_STREAM) !== 0) this.remoteEnded(stream);
    else this.replenishStreamWindow(stream);
  }

  /** Hands request data to the stream's call, within the connection's MAX_HELD_REQUEST_BYTES. */
  private deliver(stream: LeanStream, data: Buffer): void {
    const { call } = stream;
    if (call === undefined) return;
    const limit = this.heldRequestLimit;
    if (this.heldRequestBytes + data.length > limit) {
      this.release(stream);
      call.refuse(
        grpc.status.RESOURCE_EXHAUSTED,
        `the connection holds ${this.heldRequestBytes} bytes of requests not yet complete; ${data.length} more would pass its limit of ${limit} bytes (finish or cancel requests in flight, or spread them over connections)`,
      );
      return;
    }
    if (call.data(data)) {
      stream.heldRequestBytes += data.length;
      this.heldRequestBytes += data.length;
    }
  }

  /** The stream's call holds none of its request any more: it ended, was answered, or is gone. */
  private release(stream: LeanStream): void {
    this.heldRequestBytes -= stream.heldRequestBytes;
    stream.heldRequestBytes = 0;
  }

  private replenishStreamWindow(stream: LeanStream): void {
    if (!this.streams.has(stream.id) || stream.remoteClosed || stream.awaitingDrain || stream.receiveAvailable >= DEFAULT_WINDOW / 2) return;
    this.write(u32Frame(FrameType.WINDOW_UPDATE, stream.id, DEFAULT_WINDOW - stream.receiveAvailable));
    stream.receiveAvailable = DEFAULT_WINDOW;
    this.scheduleFlush();
  }

  private remoteEnded(stream: LeanStream): void {
    if (stream.contentLength !== NO_CONTENT_LENGTH && stream.bodyBytes !== stream.contentLength) {
      // A body shorter than its content-length: malformed (§8.1.2.6).
      this.resetStream(stream, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    stream.remoteClosed = true;
    this.release(stream);
    stream.call?.end();
    if (stream.relayed !== undefined && !stream.relayed.closed) stream.relayed.end();
    if (stream.localClosed) this.closeStream(stream);
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a WINDOW_UPDATE not of 4 bytes');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0');
      this.connectionSendWindow += increment;
      if (this.connectionSendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'the connection window above 2^31 - 1');
      this.unblock();
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on the idle stream ${streamId}`);
      return; // on a closed stream: allowed, and of no use (§6.9)
    }
    if (increment === 0) {
      this.resetStream(stream, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (this.blocked.has(stream)) this.unblock();
  }

  private applySettings(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a SETTINGS frame not a multiple of 6 bytes');
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === SETTINGS_ENABLE_PUSH) {
        if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH other than 0 or 1');
      } else if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31 - 1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) stream.sendWindow += delta;
      } else if (id === SETTINGS_MAX_FRAME_SIZE) {
        if (value < MAX_FRAME_PAYLOAD || value > 16_777_215) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      } else if (id === SETTINGS_HEADER_TABLE_SIZE) {
        // Its acknowledgement is written before the next header block, which signals the change.
        this.hpack.decoderTableSize(value);
      }
    }
  }

  private checkSettingsAck(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a SETTINGS acknowledgement with a payload');
  }

  private checkPing(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
    if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a PING not of 8 bytes');
  }

  private onPriority(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    if (payload.length !== 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'a PRIORITY frame not of 5 bytes');
    // Priorities are not acted on; a stream that depends on itself is a stream error (§5.3.1).
    if ((payload.readUInt32BE(0) & 0x7fffffff) !== streamId) return;
    const stream = this.streams.get(streamId);
    if (stream !== undefined) this.resetStream(stream, ErrorCode.PROTOCOL_ERROR);
    else this.refuseStream(streamId, ErrorCode.PROTOCOL_ERROR);
  }

  /** A stream the client reset before its answer: see RESET_BURST. */
  private countClientReset(): void {
    const now = performance.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetRefilledAt) / 1000) * RESET_RATE_PER_S);
    this.resetRefilledAt = now;
    if (this.resetTokens < 1) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `the client reset more than ${RESET_BURST} streams, then more than ${RESET_RATE_PER_S} a second`);
    this.resetTokens -= 1;
  }

  /** Notes how a stream closed: reset by this side (late frames on it are ignored) or otherwise. */
  private rememberClosed(streamId: number, reset: boolean): void {
    this.closedIds ??= new Int32Array(CLOSED_MEMORY);
    this.closedByReset ??= new Uint8Array(CLOSED_MEMORY);
    this.closedIds[this.closedNext] = streamId;
    this.closedByReset[this.closedNext] = reset ? 1 : 0;
    this.closedNext = (this.closedNext + 1) % CLOSED_MEMORY;
  }

  /** How a stream at or below the last one closed, if it is among those remembered. */
  private closedHow(streamId: number): 'reset' | 'closed' | undefined {
    const ids = this.closedIds;
    if (ids === undefined) return undefined;
    const at = ids.lastIndexOf(streamId);
    if (at < 0) return undefined;
    return this.closedByReset![at] === 1 ? 'reset' : 'closed';
  }

  private replenishConnectionWindow(): void {
    if (this.connectionReceiveAvailable < this.connectionReceiveWindow / 2) {
      this.write(u32Frame(FrameType.WINDOW_UPDATE, 0, this.connectionReceiveWindow - this.connectionReceiveAvailable));
      this.connectionReceiveAvailable = this.connectionReceiveWindow;
      this.scheduleFlush();
    }
  }

  // ------------------------------------------------------------------------------ answering

  /**
   * Headers, one message (serialized, without the gRPC length prefix, which is added here) and OK
   * trailers on `stream`, as far as the windows allow.
   */
  sendAnswer(stream: LeanStream, message: Buffer): void {
    stream.localClosed = true;
    const size = GRPC_PREFIX + message.length;
    if (size <= stream.sendWindow && size <= this.connectionSendWindow && size <= this.peerMaxFrame) {
      // The usual case: headers, the message and the trailers as three frames in one buffer. Both
      // blocks are a few bytes (a frame holds at least 16 KiB), made here as they are written.
      const headers = this.hpack.encode(RESPONSE_HEADER_LIST);
      const trailers = this.hpack.encode(OK_TRAILER_LIST);
      const headersEnd = FRAME_HEADER + headers.length;
      const dataEnd = headersEnd + FRAME_HEADER + size;
      const out = Buffer.allocUnsafe(dataEnd + FRAME_HEADER + trailers.length);
      frameHeader(out, 0, headers.length, FrameType.HEADERS, FLAG_END_HEADERS, stream.id);
      headers.copy(out, FRAME_HEADER);
      frameHeader(out, headersEnd, size, FrameType.DATA, 0, stream.id);
      grpcPrefix(out, headersEnd + FRAME_HEADER, message.length);
      message.copy(out, headersEnd + FRAME_HEADER + GRPC_PREFIX);
      frameHeader(out, dataEnd, trailers.length, FrameType.HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream.id);
      trailers.copy(out, dataEnd + FRAME_HEADER);
      stream.sendWindow -= size;
      this.connectionSendWindow -= size;
      this.write(out);
      this.localEnded(stream);
      this.scheduleFlush();
      return;
    }
    this.write(this.headersFrame(stream.id, this.hpack.encode(RESPONSE_HEADER_LIST), 0));
    const framed = Buffer.allocUnsafe(size);
    grpcPrefix(framed, 0, message.length);
    message.copy(framed, GRPC_PREFIX);
    stream.queue.push(framed);
    stream.trailers = OK_TRAILERS_BLOCK;
    stream.ending = true;
    this.drain(stream);
    this.scheduleFlush();
  }

  /** A trailers-only answer on `stream`. */
  sendStatus(stream: LeanStream, fields: string[]): void {
    stream.localClosed = true;
    this.write(this.headersFrame(stream.id, encodeFields(fields), FLAG_END_STREAM));
    this.localEnded(stream);
    this.scheduleFlush();
  }

  /** Resets `stream`; `byCall`: the call asked (it learns of the close after it returns). */
  resetStream(stream: LeanStream, code: number = ErrorCode.INTERNAL_ERROR, byCall = false): void {
    if (!this.streams.has(stream.id)) return;
    stream.resetSent = true;
    this.write(u32Frame(FrameType.RST_STREAM, stream.id, code));
    this.scheduleFlush();
    this.closeStream(stream, byCall);
  }

  /** Frames for a header block about to be written (so it carries a pending table size update). */
  private headersFrame(streamId: number, encoded: Buffer, flags: number): Buffer {
    const block = this.hpack.withPendingUpdate(encoded);
    // A block larger than the peer's frame size is split into HEADERS and CONTINUATION frames.
    if (block.length <= this.peerMaxFrame) {
      const out = Buffer.allocUnsafe(FRAME_HEADER + block.length);
      frameHeader(out, 0, block.length, FrameType.HEADERS, flags | FLAG_END_HEADERS, streamId);
      block.copy(out, FRAME_HEADER);
      return out;
    }
    const parts: Buffer[] = [];
    for (let at = 0; at < block.length; at += this.peerMaxFrame) {
      const piece = block.subarray(at, at + this.peerMaxFrame);
      const last = at + this.peerMaxFrame >= block.length;
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      parts.push(frame(type, (at === 0 ? flags : 0) | (last ? FLAG_END_HEADERS : 0), streamId, piece));
    }
    return Buffer.concat(parts);
  }

  /**
   * Sends what the windows allow of the stream's queued data; once it is all out and the stream is
   * ending, its trailers (or an empty DATA frame) with END_STREAM.
   */
  private drain(stream: LeanStream): void {
    const { queue } = stream;
    while (queue.length > 0) {
      const head = queue[0]!;
      const size = Math.min(head.length, stream.sendWindow, this.connectionSendWindow, this.peerMaxFrame);
      if (size <= 0) {
        this.blocked.add(stream);
        return;
      }
      this.write(frame(FrameType.DATA, 0, stream.id, size === head.length ? head : head.subarray(0, size)));
      stream.sendWindow -= size;
      this.connectionSendWindow -= size;
      if (size === head.length) queue.shift();
      else queue[0] = head.subarray(size);
    }
    this.blocked.delete(stream);
    if (stream.ending) {
      if (stream.trailers !== undefined) this.write(this.headersFrame(stream.id, stream.trailers, FLAG_END_STREAM));
      else this.write(frame(FrameType.DATA, FLAG_END_STREAM, stream.id));
      this.localEnded(stream);
    } else if (stream.relayed?.isPaused() === true) {
      stream.relayed.resume();
    }
  }

  private unblock(): void {
    for (const stream of [...this.blocked]) {
      if (this.connectionSendWindow <= 0) break;
      if (stream.sendWindow > 0) this.drain(stream);
    }
    this.scheduleFlush();
  }

  // ------------------------------------------------------------------------------- relaying

  /** Serves a stream of another method through node:http2 (see the top of the file). */
  private relay(streamId: number, fields: string[], endStream: boolean, contentLength: number): void {
    this.lastStreamId = streamId;
    const stream = new LeanStream(this, streamId, this.peerInitialWindow);
    stream.contentLength = contentLength;
    this.streams.set(streamId, stream);
    let request: ClientHttp2Stream;
    try {
      request = this.internal().request(headersFrom(fields), { endStream });
    } catch (error) {
      this.options.environment.logFailure('(relayed HTTP/2 stream)', error instanceof Error ? error : new Error(String(error)));
      this.resetStream(stream);
      return;
    }
    stream.relayed = request;
    if (endStream) stream.remoteClosed = true;
    request.on('error', ignore);
    request.on('response', (headers: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number) => {
      if (!this.streams.has(streamId)) return;
      stream.headersSent = true;
      const block = encodeFields(fieldsFrom(headers));
      if ((flags & FLAG_END_STREAM) !== 0) {
        stream.localClosed = true;
        this.write(this.headersFrame(streamId, block, FLAG_END_STREAM));
        this.localEnded(stream);
        this.scheduleFlush();
        return;
      }
      this.write(this.headersFrame(streamId, block, 0));
      this.drain(stream);
      this.scheduleFlush();
    });
    request.on('data', (chunk: Buffer) => {
      if (!this.streams.has(streamId)) return;
      stream.queue.push(chunk);
      if (stream.headersSent) {
        this.drain(stream);
        this.scheduleFlush();
      }
      // Paused while the client's window is full; drain() resumes it.
      if (stream.queue.length > 0) request.pause();
    });
    request.on('trailers', (trailers: IncomingHttpHeaders) => {
      stream.trailers = encodeFields(fieldsFrom(trailers));
    });
    request.on('close', () => {
      if (!this.streams.has(streamId) || stream.localClosed) return;
      const code = request.rstCode ?? ErrorCode.INTERNAL_ERROR;
      if (code !== ErrorCode.NO_ERROR || !stream.headersSent) {
        this.resetStream(stream, code === ErrorCode.NO_ERROR ? ErrorCode.INTERNAL_ERROR : code);
        return;
      }
      stream.localClosed = true;
      stream.ending = true;
      this.drain(stream);
      this.scheduleFlush();
    });
  }

  /** The in-process connection to node:http2 that relayed streams share. */
  private internal(): ClientHttp2Session {
    let session = this.internalSession;
    if (session === undefined || session.closed || session.destroyed) {
      const connection = this.options.connectInternal();
      session = http2.connect('http://concord.internal', { createConnection: () => connection, maxSessionMemory: Number.MAX_SAFE_INTEGER });
      session.on('error', ignore);
      this.internalSession = session;
    }
    return session;
  }

  private localEnded(stream: LeanStream): void {
    if (!stream.remoteClosed) {
      // Answered before the request ended (an error): the rest of the request is not wanted.
      stream.resetSent = true;
      this.write(u32Frame(FrameType.RST_STREAM, stream.id, ErrorCode.NO_ERROR));
    }
    // The call is still in the middle of answering: it learns of the close once it is done, as a
    // node:http2 stream's 'close' comes after respond() has returned.
    this.closeStream(stream, true);
  }

  private closeStream(stream: LeanStream, notifyLater = false): void {
    if (!this.streams.delete(stream.id)) return;
    this.release(stream);
    this.rememberClosed(stream.id, stream.resetSent);
    this.blocked.delete(stream);
    stream.localClosed = true;
    stream.remoteClosed = true;
    const { relayed } = stream;
    if (relayed !== undefined && !relayed.closed) relayed.close(http2.constants.NGHTTP2_CANCEL);
    const call = stream.call;
    stream.call = undefined;
    if (call !== undefined) {
      if (notifyLater) process.nextTick(notifyClosed, call);
      else call.closed();
    }
    this.maybeEnd();
  }

  // ---------------------------------------------------------------------------- connection

  private goAway(code: ErrorCode, lastId = this.lastStreamId): void {
    if (this.goAwayLastId !== undefined) return;
    this.goAwayLastId = Math.max(0, lastId);
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(this.goAwayLastId, 0);
    payload.writeUInt32BE(code, 4);
    this.write(frame(FrameType.GOAWAY, 0, 0, payload));
    this.scheduleFlush();
  }

  /** After GOAWAY (either way), the connection ends with its last stream. */
  private maybeEnd(): void {
    if (this.state !== 'lean' || this.streams.size > 0) return;
    if (this.goAwayLastId === undefined && !this.peerGoneAway) return;
    this.flush();
    this.socket.end();
  }

  private connectionError(error: unknown): void {
    const code = error instanceof ConnectionError ? error.code : ErrorCode.INTERNAL_ERROR;
    if (this.state === 'sniffing' || this.state === 'awaiting-ack') {
      // node:http2 will find the same fault and answer it its own way.
      this.settingsAcked = true;
      this.handOffNow();
      return;
    }
    if (!(error instanceof ConnectionError)) this.options.environment.logFailure('(lean HTTP/2 connection)', error instanceof Error ? error : new Error(String(error)));
    this.goAway(code);
    this.flush();
    this.state = 'closed';
    for (const stream of [...this.streams.values()]) this.closeStream(stream);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private write(buffer: Buffer): void {
    this.out.push(buffer);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flushLater);
  }

  private readonly flushLater = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    const { out } = this;
    if (out.length === 0) return;
    this.out = [];
    if (this.socket.destroyed) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }
}

function ignore(): void {
  // Errors of relayed streams and the internal session end them; 'close' is where they are handled.
}

/** A header object for node:http2 from decoded fields (repeated names become lists). */
function headersFrom(fields: readonly string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = [previous, value];
  }
  return headers;
}

/** Fields from a header object of node:http2. */
function fieldsFrom(headers: IncomingHttpHeaders | Record<string, unknown>): string[] {
  const fields: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const one of value) fields.push(name, String(one));
    else fields.push(name, String(value));
  }
  return fields;
}

function wellFormed(check: (fields: readonly string[]) => void, fields: readonly string[]): boolean {
  try {
    check(fields);
    return true;
  } catch (error) {
    if (error instanceof MalformedHeaders) return false;
    throw error;
  }
}

function notifyClosed(call: LeanUnaryCall): void {
  call.closed();
}

/** One request stream of a lean connection. */
class LeanStream {
  call: LeanUnaryCall | undefined;
  /** For a stream of another method: its relay to node:http2. */
  relayed: ClientHttp2Stream | undefined;
  remoteClosed = false;
  /** Whether this side has ended (or is ending, once the queue drains) its half. */
  localClosed = false;
  receiveAvailable = DEFAULT_WINDOW;
  /** Data waiting for window. */
  readonly queue: Buffer[] = [];
  /** Once the queue is out: end the stream, with these trailers if set. */
  ending = false;
  trailers: Buffer | undefined;
  headersSent = false;
  /** A relayed stream whose node:http2 side is not taking data: no more window for the client. */
  awaitingDrain = false;
  /** The request's content-length (NO_CONTENT_LENGTH if none), and the body bytes received. */
  contentLength = NO_CONTENT_LENGTH;
  bodyBytes = 0;
  /** Of the connection's heldRequestBytes, this stream's call's. */
  heldRequestBytes = 0;
  /** Whether this side sent RST_STREAM on it. */
  resetSent = false;

  constructor(
    readonly session: LeanSession,
    readonly id: number,
    public sendWindow: number,
  ) {}
}

/** A direct unary call on a lean stream. */
class LeanUnaryCall extends UnaryCall {
  private headersObject: IncomingHttpHeaders | undefined;

  constructor(
    route: DirectRoute,
    environment: DirectCallEnvironment,
    private readonly stream: LeanStream,
    private readonly fields: string[],
    private readonly peer: string,
  ) {
    super(route, environment);
  }

  protected requestHeaders(): IncomingHttpHeaders {
    if (this.headersObject === undefined) {
      const headers: Record<string, string | string[]> = {};
      const { fields } = this;
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i]!;
        const value = fields[i + 1]!;
        const previous = headers[name];
        // As Node presents repeated headers: set-cookie as a list, others joined with ", ".
        if (previous === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
        else if (Array.isArray(previous)) previous.push(value);
        else headers[name] = `${previous}, ${value}`;
      }
      this.headersObject = headers as IncomingHttpHeaders;
    }
    return this.headersObject;
  }

  protected answerable(): boolean {
    return !this.stream.localClosed;
  }

  protected writeAnswer(message: Buffer): void {
    this.stream.session.sendAnswer(this.stream, message);
  }

  protected writeStatus(fields: string[]): void {
    this.stream.session.sendStatus(this.stream, fields);
  }

  protected resetStream(): void {
    this.stream.session.resetStream(this.stream, undefined, true);
  }

  getPeer(): string {
    return this.peer;
  }
}
