import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

type Handler = (request: http.IncomingMessage | http2.Http2ServerRequest, response: http.ServerResponse | http2.Http2ServerResponse) => void;

/**
 * One cleartext port for HTTP/2 with prior knowledge (gRPC, and Connect or
 * gRPC-Web from HTTP/2 clients) and HTTP/1.1 (Connect from plain curl or any
 * HTTP client, gRPC-Web from browsers and HTTP/1.1 proxies). Every HTTP/2
 * connection opens with the client preface "PRI * HTTP/2.0…", which no
 * HTTP/1.1 request line starts with: the first bytes decide which server the
 * connection goes to, and go back into the socket for it to read. (TLS
 * negotiates the same through ALPN instead.)
 */
export function createCleartextServer(options: { http2: http2.ServerOptions; maxHeaderBytes: number }, handler: Handler) {
  const h2 = http2.createServer(options.http2, handler);
  const h1 = http.createServer({ maxHeaderSize: options.maxHeaderBytes }, handler);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      // "PR" starts no HTTP/1.1 method ("PRI" is HTTP/2's): two bytes decide.
      if (head.length < 2 && head.toString("latin1") === "P") return;
      socket.removeListener("data", onData);
      socket.pause();
      socket.unshift(head);
      if (head.subarray(0, 2).toString("latin1") === "PR") {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  /** Destroys every connection, whatever either server still thinks of it (the end of a shutdown's grace). */
  const destroyAll = () => {
    for (const socket of sockets) socket.destroy();
  };
  return { server, h1, h2, destroyAll };
}
