import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { type ErrorInfo, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";

/** A failed grpc-js call, with the ErrorInfo decoded from grpc-status-details-bin. */
export class GrpcCallError extends Error {
  readonly code: grpc.status;
  readonly errorInfo: ErrorInfo | undefined;

  constructor(error: grpc.ServiceError) {
    super(error.details);
    this.code = error.code;
    const [bin] = error.metadata.get("grpc-status-details-bin");
    const status = bin instanceof Buffer ? fromBinary(StatusSchema, bin) : undefined;
    const info = status?.details.map((any) => anyUnpack(any, ErrorInfoSchema)).find((m) => m !== undefined);
    this.errorInfo = info;
  }
}

/**
 * A real gRPC peer (@grpc/grpc-js, not Connect) for any generated service:
 * messages are encoded with protobuf-es, the transport is grpc-js's own.
 */
export function createGrpcJsClient(service: DescService, address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) {
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const method of service.methods) {
    const codec = <D extends DescMessage>(desc: D) => ({
      serialize: (value: MessageInitShape<D>) => Buffer.from(toBinary(desc, create(desc, value))),
      deserialize: (bytes: Buffer) => fromBinary(desc, bytes),
    });
    const input = codec(method.input);
    const output = codec(method.output);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: input.serialize,
      requestDeserialize: input.deserialize,
      responseSerialize: output.serialize,
      responseDeserialize: output.deserialize,
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, service.name);
  const client = new Client(address, credentials, options) as unknown as grpc.Client &
    Record<string, (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<unknown>) => void>;

  return {
    client,
    /** Calls a unary method; rejects with GrpcCallError. */
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      request: MessageInitShape<I>,
      options: grpc.CallOptions & { metadata?: grpc.Metadata } = {},
    ): Promise<MessageShape<O>> {
      const { metadata = new grpc.Metadata(), ...callOptions } = options;
      return new Promise((resolve, reject) => {
        client[method.localName]!(request, metadata, callOptions, (error, response) => {
          if (error) reject(new GrpcCallError(error));
          else resolve(response as MessageShape<O>);
        });
      });
    },
    close: () => client.close(),
  };
}

/**
 * The unary methods of a grpc-js client in the shape of a Connect-ES client
 * (`timeoutMs` as the call's deadline; failures as ConnectError carrying the
 * ErrorInfo), so helpers written for Connect clients run over a grpc-js
 * channel, e.g. one balancing calls over several servers.
 */
export function asConnectClient<S extends DescService>(service: S, grpcJs: ReturnType<typeof createGrpcJsClient>): Client<S> {
  const methods: Record<string, (request: never, options?: { timeoutMs?: number }) => Promise<unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    methods[method.localName] = (request, options = {}) =>
      grpcJs
        .unary(method as DescMethodUnary<DescMessage, DescMessage>, request, options.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs })
        .catch((error: unknown) => {
          if (!(error instanceof GrpcCallError)) throw error;
          const details = error.errorInfo === undefined ? [] : [{ desc: ErrorInfoSchema, value: error.errorInfo }];
          throw new ConnectError(error.message, error.code as number as Code, undefined, details);
        });
  }
  return methods as unknown as Client<S>;
}
