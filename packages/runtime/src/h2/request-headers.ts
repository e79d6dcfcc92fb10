// What makes a request's header block malformed (RFC 7540 §8.1.2), for the lean HTTP/2 server.
// A malformed request is a stream error of type PROTOCOL_ERROR; node:http2 (nghttp2) applies the
// same rules to the connections it serves. Runs once per request on the hot path: one pass over
// the decoded fields, no allocation unless something is wrong.

const REQUEST_PSEUDO_HEADERS = new Set([':method', ':scheme', ':path', ':authority']);
/** Hop-by-hop fields of HTTP/1.1 that HTTP/2 forbids (§8.1.2.2); `te` is allowed as "trailers". */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** What checkRequestHeaders returns for a block without content-length. */
export const NO_CONTENT_LENGTH = -1;

/** Thrown for a malformed block; the message says what is wrong, for the log. */
export class MalformedHeaders extends Error {}

function hasUppercase(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code >= 0x41 && code <= 0x5a) return true;
  }
  return false;
}

/** Rules every field outside the pseudo-headers follows, in requests and trailers alike. */
function checkRegular(name: string, value: string): void {
  if (hasUppercase(name)) throw new MalformedHeaders(`the header name ${JSON.stringify(name)} has uppercase letters`);
  if (CONNECTION_SPECIFIC.has(name)) throw new MalformedHeaders(`the connection-specific header ${name}`);
  if (name === 'te' && value !== 'trailers') throw new MalformedHeaders(`te: ${JSON.stringify(value)} (only "trailers" is allowed)`);
}

/**
 * Checks the fields (name, value, name, value...) of a request's header block: request
 * pseudo-headers only, each at most once and before the regular fields, `:method`, `:scheme` and a
 * non-empty `:path` present (CONNECT aside), names in lowercase, no connection-specific fields, a
 * valid content-length. Returns the content-length, or NO_CONTENT_LENGTH; throws MalformedHeaders.
 */
export function checkRequestHeaders(fields: readonly string[]): number {
  let method: string | undefined;
  let scheme = false;
  let path = false;
  let regular = false;
  let contentLength = NO_CONTENT_LENGTH;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* : */) {
      if (regular) throw new MalformedHeaders(`the pseudo-header ${name} after a regular header`);
      if (!REQUEST_PSEUDO_HEADERS.has(name)) throw new MalformedHeaders(`the pseudo-header ${name}, not one of a request`);
      if (name === ':method') {
        if (method !== undefined) throw new MalformedHeaders('a second :method');
        method = value;
      } else if (name === ':scheme') {
        if (scheme) throw new MalformedHeaders('a second :scheme');
        scheme = true;
      } else if (name === ':path') {
        if (path) throw new MalformedHeaders('a second :path');
        if (value === '') throw new MalformedHeaders('an empty :path');
        path = true;
      }
      continue;
    }
    regular = true;
    checkRegular(name, value);
    if (name === 'content-length') {
      if (contentLength !== NO_CONTENT_LENGTH || !/^[0-9]{1,15}$/.test(value)) throw new MalformedHeaders(`content-length: ${JSON.stringify(value)}`);
      contentLength = Number(value);
    }
  }
  if (method === undefined) throw new MalformedHeaders('no :method');
  if (method !== 'CONNECT' && (!scheme || !path)) throw new MalformedHeaders(scheme ? 'no :path' : 'no :scheme');
  return contentLength;
}

/** Checks the fields of a request's trailers: no pseudo-headers, and the rules of regular fields. */
export function checkRequestTrailers(fields: readonly string[]): void {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a) throw new MalformedHeaders(`the pseudo-header ${name} in trailers`);
    checkRegular(name, fields[i + 1]!);
  }
}
