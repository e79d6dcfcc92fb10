// The echo floor: starts echo-server.js as its own process and calls it through a grpc-js client
// configured like the Concord SDK's channels.
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import { CHANNEL_OPTIONS } from '@concord/client';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { ECHO_METHOD_PATH, passthrough } from './echo-service.js';

const ECHO_SERVER_SCRIPT = fileURLToPath(new URL('./echo-server.js', import.meta.url));
/** SIGTERM gets this long before stop() sends SIGKILL. */
const STOP_GRACE_MS = 3000;

export interface EchoServerProcess {
  /** host:port the server serves on. */
  readonly address: string;
  readonly pid: number | undefined;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL now, for synchronous exit paths. */
  killNow(): void;
}

/** Spawns the echo server on 127.0.0.1 (a free port) and resolves once it prints its address. */
export async function startEchoServer(readyTimeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<EchoServerProcess> {
  // stdin stays a pipe we never close: if this process dies, the server sees it end and stops.
  const child = spawn(process.execPath, [ECHO_SERVER_SCRIPT, '--listen', '127.0.0.1:0'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env,
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const killNow = (): void => {
    if (running()) child.kill('SIGKILL');
  };
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo server did not print its address within ${readyTimeoutMs} ms`)), readyTimeoutMs);
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const record = JSON.parse(line) as { msg?: unknown; address?: unknown };
        if (record.msg === 'serving' && typeof record.address === 'string') {
          clearTimeout(timer);
          resolve(record.address);
        }
      } catch {
        // Not a JSON line: ignore it.
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`echo server could not be started: ${error.message}`));
    });
    void closed.then(() => {
      clearTimeout(timer);
      reject(new Error(`echo server ended (${child.signalCode ?? `exit ${child.exitCode}`}) before serving`));
    });
  }).catch((error: unknown) => {
    killNow();
    throw error;
  });
  return {
    address,
    pid: child.pid,
    killNow,
    async stop() {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(killNow, STOP_GRACE_MS);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** A client of the echo service: one channel (one HTTP/2 connection), shared by all callers. */
export class EchoClient {
  private readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  /** Sends `payload` and resolves with the bytes the server sent back. */
  echo(payload: Buffer, deadline: Date): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        ECHO_METHOD_PATH,
        passthrough,
        passthrough,
        payload,
        new Metadata(),
        { deadline },
        (error, response) => {
          if (error !== null || response === undefined) reject(error ?? new Error('echo: empty response'));
          else resolve(response);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
