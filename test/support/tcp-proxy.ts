import net from "node:net";

/** A TCP proxy to a database, which a test can cut to make the database unreachable. */
export type TcpProxy = { port: number; accepted(): number; cut(): void; restore(): void; close(): Promise<void> };

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let open = true;
  let accepted = 0;
  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    accepted++;
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Connections let through so far. */
    accepted: () => accepted,
    /** Drops every connection and refuses new ones. */
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    /** Accepts connections again. */
    restore() {
      open = true;
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
