// Promise and pull-based wrappers around grpc-js callback and stream calls.
import { Metadata, type CallOptions, type ClientReadableStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { toConcordError } from './errors.js';

export { CHANNEL_OPTIONS, INITIAL_RECONNECT_BACKOFF_MS, MAX_MESSAGE_BYTES, MAX_RECONNECT_BACKOFF_MS } from '@concord/proto';

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Calls a unary method; a failure rejects with a ConcordError carrying the call's status. */
export function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadline: Date | undefined): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const options: Partial<CallOptions> = deadline === undefined ? {} : { deadline };
    method(request, new Metadata(), options, (error, response) => {
      if (error !== null) reject(toConcordError(error));
      else resolve(response);
    });
  });
}

/** A pull-based stream of items in order. `close` may be called at any time, also with a pull pending. */
export interface PullSource<T> {
  /** The next item, or undefined at the end. Rejects with a ConcordError when the call fails. */
  next(): Promise<T | undefined>;
  /** Cancels the underlying call; a pending `next` then settles. Idempotent. */
  close(): void;
}

/**
 * Adapts a server stream of batches to a pull source of single items. grpc-js reads the next
 * message only when the Readable's buffer has room, so pulling item by item keeps HTTP/2 flow
 * control in charge and nothing is buffered beyond a few messages.
 */
export function batchedStreamSource<Msg, T>(call: ClientReadableStream<Msg>, itemsOf: (message: Msg) => readonly T[]): PullSource<T> {
  // grpc-js emits 'error' on a cancelled call even when nobody is reading any more; an 'error'
  // event without a listener would crash the process, so there is always one.
  call.on('error', () => {});
  const messages = call[Symbol.asyncIterator]() as AsyncIterator<Msg>;
  let batch: readonly T[] = [];
  let index = 0;
  let closed = false;
  return {
    async next() {
      while (index >= batch.length) {
        let result: IteratorResult<Msg>;
        try {
          result = await messages.next();
        } catch (error) {
          throw toConcordError(error);
        }
        if (result.done === true) return undefined;
        batch = itemsOf(result.value);
        index = 0;
      }
      return batch[index++];
    },
    close() {
      if (closed) return;
      closed = true;
      // Cancel first: a pending messages.next() settles only once the stream ends or fails, and
      // the iterator's return() would otherwise queue behind it.
      call.cancel();
      messages.return?.().catch(() => {});
    },
  };
}
