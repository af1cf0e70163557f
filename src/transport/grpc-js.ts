import { create, type DescMessage, type DescMethod, type DescMethodUnary, type DescService, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { AnySchema, anyPack } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextValues,
  type HandlerContext,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { currentCallDeadline } from "../db/call-deadline.ts";
import { callerDeadlineKey } from "../interceptors/deadline.ts";
import { DomainError, invalidArgument, toConnectError } from "../api/reasons.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { MetadataHeaders } from "./grpc-js-metadata.ts";
import type { Limits, TlsOptions } from "./options.ts";

/** Connect's codes are gRPC's: the same numbers. */
const toGrpcStatus = (code: Code) => code as number as grpc.status;

/**
 * The gRPC protocol served by @grpc/grpc-js on a port of its own, running the
 * very same implementations through the very same interceptors (logging,
 * error mapping, deadline, limits, authentication) as the Connect port. Only
 * the transport differs: grpc-js's HTTP/2 and framing are leaner than
 * Connect's for the gRPC protocol. Unary, server-streaming and bidi methods
 * (health's Watch, reflection); client streaming is not used.
 */
export function createGrpcJsServer(options: {
  services: readonly { service: DescService; impl: object }[];
  interceptors: readonly Interceptor[];
  limits: Limits;
  tls?: TlsOptions;
}) {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": options.limits.maxRequestBytes,
    "grpc.max_concurrent_streams": options.limits.maxConcurrentStreams,
    "grpc.max_metadata_size": options.limits.maxHeaderBytes,
    // Channelz bookkeeping costs every call; nothing reads it.
    "grpc.enable_channelz": 0,
  });
  for (const { service, impl } of options.services) {
    const definition: grpc.ServiceDefinition = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const implementation = (impl as Record<string, unknown>)[method.localName];
      if (typeof implementation !== "function" || method.methodKind === "client_streaming") continue;
      Object.assign(definition, { [method.localName]: methodDefinition(service, method) });
      handlers[method.localName] =
        method.methodKind === "unary"
          ? unaryHandler(service, method as DescMethodUnary<DescMessage, DescMessage>, implementation as never, options.interceptors)
          : streamHandler(service, method, implementation as never, options.interceptors);
    }
    server.addService(definition, handlers);
  }

  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(
        options.tls.clientCa ?? null,
        [{ private_key: options.tls.key, cert_chain: options.tls.cert }],
        options.tls.clientCa !== undefined,
      )
    : grpc.ServerCredentials.createInsecure();

  return {
    listen: (port: number, host: string) =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync(`${host}:${port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
      ),
    /** Refuses new calls, lets calls in flight finish for up to `graceMs`. */
    close: (graceMs: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/** A request body that is not a message of the method's input type. */
class MalformedRequest {
  readonly typeName: string;
  constructor(typeName: string) {
    this.typeName = typeName;
  }
}

function methodDefinition(service: DescService, method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: method.methodKind === "bidi_streaming",
    responseStream: method.methodKind !== "unary",
    requestSerialize: (message) => Buffer.from(toBinary(method.input, message as never)),
    // Never throws (grpc-js would answer INTERNAL): a body that does not decode
    // becomes INVALID_ARGUMENT in the handler, logged like any other call.
    requestDeserialize: (bytes: Buffer) => {
      try {
        return fromBinary(method.input, bytes);
      } catch {
        return new MalformedRequest(method.input.typeName);
      }
    },
    responseSerialize: (message) => Buffer.from(toBinary(method.output, message as never)),
    responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
  };
}

function unaryHandler(
  service: DescService,
  method: DescMethodUnary<DescMessage, DescMessage>,
  implementation: (request: unknown, context: unknown) => Promise<unknown>,
  interceptors: readonly Interceptor[],
): grpc.handleUnaryCall<unknown, unknown> {
  // The implementation as the innermost step, then each interceptor around it.
  const invoke = interceptors.reduceRight<(request: UnaryRequest) => Promise<UnaryResponse>>(
    (next, interceptor) => interceptor(next as never) as never,
    async (request) => {
      const output = await implementation(decoded(request.message), new GrpcJsHandlerContext(service, method, request));
      return new GrpcJsUnaryResponse(service, method, create(method.output, output as never)) as unknown as UnaryResponse;
    },
  );

  return (call, callback) => {
    const { cancellation, ...request } = callBasics(call);
    invoke({ stream: false, service, method, ...request, message: call.request as never }).then(
      (response) => {
        cancellation.answered = true;
        callback(null, response.message);
      },
      (error: unknown) => {
        cancellation.answered = true;
        callback(toServiceError(error));
      },
    );
  };
}

/** What every call hands the interceptors, whatever its kind: headers, deadline, cancellation. */
function callBasics(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>) {
  // grpc-js has already parsed the caller's deadline: the deadline
  // interceptor takes it as it is (Infinity: none).
  const contextValues = createContextValues();
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (Number.isFinite(deadlineMs)) contextValues.set(callerDeadlineKey, deadlineMs);
  const cancellation = new Cancellation();
  // grpc-js reports every finished call as cancelled too: only a call
  // cancelled before it answered counts.
  (call as grpc.ServerUnaryCall<unknown, unknown>).once("cancelled", () => cancellation.cancel());
  return {
    cancellation,
    requestMethod: "POST",
    url: call.getPath(),
    get signal() {
      return cancellation.signal;
    },
    header: new MetadataHeaders(call.metadata) as Headers,
    contextValues,
  };
}

/**
 * A server-streaming or bidi method: requests in (one, or the caller's
 * stream), responses out as the implementation yields them, each write
 * waiting for the transport to drain, so a slow caller holds the stream
 * back instead of growing a buffer.
 */
function streamHandler(
  service: DescService,
  method: DescMethod,
  implementation: (request: unknown, context: unknown) => AsyncIterable<unknown>,
  interceptors: readonly Interceptor[],
): grpc.handleServerStreamingCall<unknown, unknown> | grpc.handleBidiStreamingCall<unknown, unknown> {
  const invoke = interceptors.reduceRight<(request: StreamRequest) => Promise<StreamResponse>>(
    (next, interceptor) => interceptor(next as never) as never,
    async (request) => {
      const context = new GrpcJsHandlerContext(service, method, request);
      const input = method.methodKind === "server_streaming" ? await single(request.message) : request.message;
      return {
        stream: true,
        service,
        method,
        header: new Headers(),
        trailer: new Headers(),
        message: implementation(input, context),
      } as unknown as StreamResponse;
    },
  );
  return (call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>) => {
    const { cancellation, ...request } = callBasics(call);
    const messages = "request" in call ? oneRequest(call.request) : requestStream(call as AsyncIterable<unknown>);
    invoke({ stream: true, service, method: method as never, ...request, message: messages as AsyncIterable<never> })
      .then(async (response) => {
        for await (const message of response.message) {
          if (cancellation.cancelled) break;
          if (!call.write(message)) await new Promise((resolve) => call.once("drain", resolve));
        }
        cancellation.answered = true;
        call.end();
      })
      .catch((error: unknown) => {
        cancellation.answered = true;
        call.emit("error", toServiceError(error));
      });
  };
}

/** A request message as decoded, or INVALID_ARGUMENT for a body that did not decode. */
function decoded<T>(message: T): T {
  if (message instanceof MalformedRequest) throw invalidArgument("request", `is not a valid ${message.typeName} message`);
  return message;
}

async function* oneRequest<T>(message: T): AsyncIterable<T> {
  yield decoded(message);
}

async function* requestStream(messages: AsyncIterable<unknown>): AsyncIterable<unknown> {
  for await (const message of messages) yield decoded(message);
}

async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  for await (const message of messages) return message;
  throw invalidArgument("request", "is missing");
}

/**
 * A call's cancellation by its caller, as an AbortSignal made only when
 * something asks for it: no implementation on this port reads it on the hot
 * path, and an AbortController (an EventTarget) per call is not free.
 */
class Cancellation {
  answered = false;
  #cancelled = false;

  get cancelled(): boolean {
    return this.#cancelled;
  }
  #controller: AbortController | undefined;

  cancel(): void {
    if (this.answered || this.#cancelled) return;
    this.#cancelled = true;
    this.#controller?.abort();
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort();
    }
    return this.#controller.signal;
  }
}

/**
 * The context an implementation gets: what Connect's createHandlerContext
 * builds, less its per-call machinery (a deadline timer and two more
 * AbortControllers linked by listeners, three Headers copies): the call's own
 * signal aborts when the caller cancels, the deadline interceptor answers at
 * the deadline (its deadline is the one `timeoutMs` reports), and grpc-js
 * sends no response headers or trailers of the implementation's, so those are
 * made only if one asks for them.
 */
class GrpcJsHandlerContext implements HandlerContext {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly #request: UnaryRequest | StreamRequest;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(service: DescService, method: DescMethod, request: UnaryRequest | StreamRequest) {
    this.service = service;
    this.method = method;
    this.#request = request;
  }
  get url(): string {
    return this.#request.url;
  }
  get signal(): AbortSignal {
    return this.#request.signal;
  }
  get requestHeader(): Headers {
    return this.#request.header;
  }
  get values() {
    return this.#request.contextValues;
  }
  /** The deadline interceptor's (the caller's, capped by MAX_DEADLINE_MS), read only when asked. */
  timeoutMs(): number | undefined {
    const deadline = currentCallDeadline();
    return deadline === undefined ? undefined : deadline - Date.now();
  }
  get responseHeader(): Headers {
    return (this.#responseHeader ??= new Headers());
  }
  get responseTrailer(): Headers {
    return (this.#responseTrailer ??= new Headers());
  }
}

/** A unary response for the interceptors; its headers and trailers are made only if one asks. */
class GrpcJsUnaryResponse {
  readonly stream = false;
  readonly service: DescService;
  readonly method: DescMethodUnary<DescMessage, DescMessage>;
  readonly message: Message;
  #header: Headers | undefined;
  #trailer: Headers | undefined;

  constructor(service: DescService, method: DescMethodUnary<DescMessage, DescMessage>, message: Message) {
    this.service = service;
    this.method = method;
    this.message = message;
  }
  get header(): Headers {
    return (this.#header ??= new Headers());
  }
  get trailer(): Headers {
    return (this.#trailer ??= new Headers());
  }
}

/**
 * The interceptors have mapped every error of a call's start; here it only
 * changes wire format. An error raised while a stream runs is mapped here:
 * a DomainError by its reason, anything else a bare INTERNAL.
 */
function toServiceError(error: unknown): Partial<grpc.ServiceError> {
  const connectError =
    error instanceof ConnectError
      ? error
      : error instanceof DomainError
        ? toConnectError(error)
        : new ConnectError("internal error", Code.Internal);
  const metadata = new grpc.Metadata();
  const status = create(StatusSchema, {
    code: connectError.code,
    message: connectError.rawMessage,
    details: connectError.details.map((detail) =>
      "desc" in detail
        ? anyPack(detail.desc, create(detail.desc, detail.value))
        : create(AnySchema, { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value }),
    ),
  });
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  return { code: toGrpcStatus(connectError.code), details: connectError.rawMessage, metadata };
}
