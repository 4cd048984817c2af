import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on loopback in front of a real service, so a test can take "the database" away
 * and bring it back without touching the machine's PostgreSQL or Redis.
 *  - cut():     stops listening and drops every open connection: new connections are refused
 *               (ECONNREFUSED), open ones see a reset, as when the server goes away.
 *  - stall():   keeps every connection open but forwards nothing, either way: a network path
 *               that silently drops packets, or a server that hangs. Nothing errors; only a
 *               client with its own timeouts notices.
 *  - restore(): listens again on the same port / resumes forwarding; clients reconnect on their own.
 */
export class Relay {
  readonly targetHost: string;
  readonly targetPort: number;
  port = 0;
  private server: Server | null = null;
  private stalled = false;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; held: [Socket, Buffer][] }>();
  /** Connections accepted so far (to show that a client really went through the relay). */
  accepted = 0;

  constructor(targetHost: string, targetPort: number) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
  }

  static async start(targetHost: string, targetPort: number): Promise<Relay> {
    const relay = new Relay(targetHost, targetPort);
    await relay.listen(0);
    return relay;
  }

  private listen(port: number): Promise<void> {
    const server = createServer((client) => {
      this.accepted++;
      const upstream = connect({ host: this.targetHost, port: this.targetPort });
      const pair = { client, upstream, held: [] as [Socket, Buffer][] };
      this.pairs.add(pair);
      const forward = (to: Socket) => (data: Buffer) => {
        if (this.stalled) pair.held.push([to, data]);
        else to.write(data);
      };
      client.on('data', forward(upstream));
      upstream.on('data', forward(client));
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) {
        s.on('error', end);
        s.once('close', end);
        s.once('end', end);
      }
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.server = server;
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  /** The service "goes down": refused from now on, open connections reset. */
  async cut(): Promise<void> {
    this.stalled = false;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
    await closed;
  }

  /** The service "hangs": connections stay open (and new ones are accepted) but nothing gets through. */
  stall(): void {
    this.stalled = true;
  }

  /** The service "comes back" on the same address. */
  async restore(): Promise<void> {
    if (this.stalled) {
      this.stalled = false;
      for (const pair of this.pairs) {
        for (const [to, data] of pair.held) if (!to.destroyed) to.write(data);
        pair.held.length = 0;
      }
    }
    if (this.server) return;
    // The port was ours a moment ago; retry briefly in case the OS holds it.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.listen(this.port);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
