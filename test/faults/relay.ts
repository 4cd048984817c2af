import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on loopback in front of a real service, so a test can take "the database" away
 * and bring it back without touching the machine's PostgreSQL or Redis.
 *  - cut():     stops listening and drops every open connection: new connections are refused
 *               (ECONNREFUSED), open ones see a reset, exactly as when the server goes away.
 *  - restore(): listens again on the same port; clients reconnect on their own.
 */
export class Relay {
  readonly targetHost: string;
  readonly targetPort: number;
  port = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
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

  get up(): boolean {
    return this.server !== null;
  }

  private listen(port: number): Promise<void> {
    const server = createServer((client) => {
      this.accepted++;
      const upstream = connect({ host: this.targetHost, port: this.targetPort });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.once('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
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
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
    await closed;
  }

  /** The service "comes back" on the same address. */
  async restore(): Promise<void> {
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
