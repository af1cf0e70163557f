import http2 from "node:http2";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { reflectionServices } from "../platform/reflection.ts";
import { createCleartextServer } from "./cleartext.ts";
import { createGrpcJsServer } from "./grpc-js.ts";
import { isGrpcRequest, withSpecGrpcMessage } from "./grpc-message.ts";
import { markMalformedUtf8 } from "./utf8.ts";
import type { Limits, TlsOptions } from "./options.ts";

/** A service and its implementation (a ServiceImpl of that service). */
type Implementation = { service: DescService; impl: object };

export type TransportOptions = {
  /** What both ports serve. */
  services: readonly Implementation[];
  /** Run around every call on both ports, outermost first. */
  interceptors: readonly Interceptor[];
  limits: Limits;
  tls?: TlsOptions;
  /** More descriptor files for reflection clients (error details, say). */
  reflectionFiles?: readonly DescFile[];
};

export type Transports = {
  /** The main port: gRPC, gRPC-Web and Connect, plus reflection; resolves with the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /** The second port: the gRPC protocol through @grpc/grpc-js. */
  listenGrpcJs(port: number, host?: string): Promise<number>;
  /** Sessions get GOAWAY, calls in flight finish for up to `graceMs`, then remaining sessions are destroyed. */
  close(graceMs: number): Promise<void>;
};

/**
 * The two ports, serving the same implementations through the same
 * interceptors, limits and TLS: the main HTTP/2 port (cleartext, or TLS with
 * optional client certificates) through Connect, and the grpc-js port.
 */
export function createTransports(options: TransportOptions): Transports {
  const { services, interceptors, limits, tls } = options;
  // Both ports serve reflection too, describing what they serve.
  const served = [...services, ...reflectionServices(services.map((s) => s.service), options.reflectionFiles)];
  const routes = (router: ConnectRouter) => {
    for (const { service, impl } of served) router.service(service, impl as Partial<ServiceImpl<DescService>>);
  };
  markMalformedUtf8();
  const connectHandler = connectNodeAdapter({ routes, readMaxBytes: limits.maxRequestBytes, interceptors: [...interceptors] });
  const handler: typeof connectHandler = (request, response) => {
    if (isGrpcRequest(request)) withSpecGrpcMessage(response);
    connectHandler(request, response);
  };
  const grpcJs = createGrpcJsServer({ services: served, interceptors, limits, tls });
  let grpcJsListening = false;
  const http2Options = {
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxSendHeaderBlockLength: limits.maxHeaderBytes,
  };
  // TLS negotiates HTTP/2 or HTTP/1.1 through ALPN; cleartext by the first bytes.
  const cleartext = tls ? undefined : createCleartextServer({ http2: http2Options, maxHeaderBytes: limits.maxHeaderBytes }, handler);
  const h2 = tls
    ? http2.createSecureServer(
        {
          ...http2Options,
          cert: tls.cert,
          key: tls.key,
          ca: tls.clientCa,
          requestCert: tls.clientCa !== undefined,
          rejectUnauthorized: tls.clientCa !== undefined,
          allowHTTP1: true,
        },
        handler,
      )
    : cleartext!.h2;
  const server: net.Server = cleartext?.server ?? h2;
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  return {
    async listen(port, host = "127.0.0.1") {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    async listenGrpcJs(port, host = "127.0.0.1") {
      const bound = await grpcJs.listen(port, host);
      grpcJsListening = true;
      return bound;
    },
    async close(graceMs) {
      const grpcJsClosed = grpcJsListening ? grpcJs.close(graceMs) : Promise.resolve();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // GOAWAY: clients open no new streams here; streams in flight finish.
      // HTTP/1.1 connections close once idle.
      for (const session of sessions) session.close();
      cleartext?.h1.close();
      cleartext?.h1.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const session of sessions) session.destroy();
        cleartext?.h1.closeAllConnections();
        // An HTTP/2 session destroyed with a stream still open can leave
        // its socket behind (a client that stopped reading a stream without
        // cancelling it), which would keep the port from closing.
        cleartext?.destroyAll();
      }, graceMs);
      await Promise.all([closed, grpcJsClosed]);
      clearTimeout(timer);
    },
  };
}
