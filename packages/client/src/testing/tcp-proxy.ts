// A TCP proxy in front of a test server, whose connections a test can break while a call is in
// flight: the way a client sees a server process die mid-call, without killing a process.
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private readonly pairs = new Set<[client: Socket, upstream: Socket]>();

  private constructor(
    private readonly server: Server,
    /** host:port clients dial. */
    readonly address: string,
  ) {}

  /** Listens on a free port of 127.0.0.1 and forwards every connection to `target` (host:port). */
  static async start(target: string): Promise<TcpProxy> {
    const colon = target.lastIndexOf(':');
    const host = target.slice(0, colon);
    const port = Number(target.slice(colon + 1));
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      const upstream = connect(port, host);
      const pair: [Socket, Socket] = [client, upstream];
      proxy?.pairs.add(pair);
      const forget = () => proxy?.pairs.delete(pair);
      client.on('error', () => upstream.destroy()).on('close', () => (upstream.destroy(), forget()));
      upstream.on('error', () => client.destroy()).on('close', () => (client.destroy(), forget()));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const bound = server.address();
    if (bound === null || typeof bound === 'string') throw new Error('expected a TCP address');
    proxy = new TcpProxy(server, `127.0.0.1:${bound.port}`);
    return proxy;
  }

  /** Breaks every open connection: 'close' ends the client's side cleanly, 'reset' with a TCP RST. */
  drop(how: 'close' | 'reset'): void {
    for (const [client, upstream] of this.pairs) {
      if (how === 'reset') client.resetAndDestroy();
      else client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Stops listening and breaks every connection. */
  stop(): void {
    this.drop('close');
    this.server.close();
  }
}
