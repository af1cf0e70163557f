import type http from "node:http";
import type http2 from "node:http2";

/**
 * grpc-message as the gRPC spec encodes it: UTF-8, with only bytes outside
 * printable ASCII, and "%", percent-encoded. Connect sends it through
 * encodeURIComponent, which also encodes ":", ",", "/" and the like, and
 * grpc-js clients (decodeURI) show those as "%3A", "%2C", "%2F".
 */
function specGrpcMessage(connectEncoded: string): string {
  let text: string;
  try {
    text = decodeURIComponent(connectEncoded);
  } catch {
    return connectEncoded;
  }
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

type Fields = http.OutgoingHttpHeaders | undefined;

function respecified(fields: Fields): Fields {
  const message = fields?.["grpc-message"];
  return typeof message === "string" ? { ...fields, "grpc-message": specGrpcMessage(message) } : fields;
}

/**
 * Makes a response of the gRPC protocol carry its grpc-message as the spec
 * encodes it, in the headers of a trailers-only answer and in the trailers.
 */
export function withSpecGrpcMessage(response: Pick<http.ServerResponse, "writeHead" | "addTrailers"> | Pick<http2.Http2ServerResponse, "writeHead" | "addTrailers">): void {
  const writeHead = response.writeHead.bind(response) as (status: number, headers?: Fields) => unknown;
  const addTrailers = response.addTrailers.bind(response) as (trailers: Fields) => void;
  Object.assign(response, {
    writeHead: (status: number, headers?: Fields) => writeHead(status, respecified(headers)),
    addTrailers: (trailers: Fields) => addTrailers(respecified(trailers)),
  });
}

/** gRPC proper: not gRPC-Web, whose clients decode grpc-message as Connect encodes it. */
export function isGrpcRequest(request: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  const type = request.headers["content-type"] ?? "";
  return type.startsWith("application/grpc") && !type.startsWith("application/grpc-web");
}
