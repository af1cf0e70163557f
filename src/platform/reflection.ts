import { create, createRegistry, type DescFile, type DescService, type Registry, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

/** The generated messages of one reflection version; v1alpha has the same fields and numbers as v1. */
type Schemas = typeof v1;

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so that buf curl,
 * grpcurl and Postman can call the service with no proto files at hand. Answers
 * from the descriptors compiled into the generated code; `services` are the
 * services listed (reflection itself is added), `extraFiles` more files to
 * describe (error details, say). Returns both versions' implementations, for
 * every port to serve.
 */
export function reflectionServices(
  services: readonly DescService[],
  extraFiles: readonly DescFile[] = [],
): { service: DescService; impl: object }[] {
  const listed = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  const index = indexFiles([...listed.map((service) => service.file), ...extraFiles]);
  return [v1, v1alpha as unknown as Schemas].map((schemas) => ({
    service: schemas.ServerReflection,
    impl: {
      async *serverReflectionInfo(requests: AsyncIterable<Request>) {
        for await (const request of requests) {
          yield create(schemas.ServerReflectionResponseSchema, {
            validHost: request.host,
            originalRequest: request,
            messageResponse: answerRequest(request, index, listed, schemas),
          });
        }
      },
    },
  }));
}

type FileIndex = { registry: Registry; byName: ReadonlyMap<string, DescFile> };

/** Every file the services need, by name, and a registry of their symbols. */
function indexFiles(roots: readonly DescFile[]): FileIndex {
  const byName = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (byName.has(file.name)) return;
    byName.set(file.name, file);
    file.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return { registry: createRegistry(...byName.values()), byName };
}

function answerRequest(
  request: Request,
  { registry, byName }: FileIndex,
  services: readonly DescService[],
  schemas: Schemas,
): Response["messageResponse"] {
  const notFound = (what: string): Response["messageResponse"] => ({
    case: "errorResponse",
    value: create(schemas.ErrorResponseSchema, { errorCode: Code.NotFound, errorMessage: `${what} not found` }),
  });
  const files = (file: DescFile | undefined): Response["messageResponse"] =>
    file === undefined
      ? notFound("file")
      : {
          case: "fileDescriptorResponse",
          value: create(schemas.FileDescriptorResponseSchema, { fileDescriptorProto: withDependencies(file) }),
        };

  const message = request.messageRequest;
  switch (message.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: create(schemas.ListServiceResponseSchema, {
          service: services.map((service) => create(schemas.ServiceResponseSchema, { name: service.typeName })),
        }),
      };
    case "fileByFilename":
      return files(byName.get(message.value));
    case "fileContainingSymbol": {
      const file = fileOfSymbol(registry, message.value);
      return file === undefined ? notFound(`symbol ${message.value}`) : files(file);
    }
    case "fileContainingExtension":
      return notFound(`extension ${message.value.extensionNumber} of ${message.value.containingType}`);
    case "allExtensionNumbersOfType":
      return registry.getMessage(message.value) === undefined
        ? notFound(`type ${message.value}`)
        : {
            case: "allExtensionNumbersResponse",
            value: create(schemas.ExtensionNumberResponseSchema, { baseTypeName: message.value, extensionNumber: [] }),
          };
    default:
      return {
        case: "errorResponse",
        value: create(schemas.ErrorResponseSchema, { errorCode: Code.InvalidArgument, errorMessage: "empty request" }),
      };
  }
}

/** The file declaring a type, service, enum or method (`pkg.Service.Method`). */
function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc !== undefined) return "file" in desc ? desc.file : undefined;
  const parent = symbol.slice(0, symbol.lastIndexOf("."));
  const service = registry.getService(parent);
  if (service?.methods.some((method) => `${parent}.${method.name}` === symbol)) return service.file;
  return undefined;
}

/** The file and everything it imports, each serialized once. */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (current: DescFile) => {
    if (seen.has(current.name)) return;
    seen.add(current.name);
    out.push(toBinary(FileDescriptorProtoSchema, current.proto));
    current.dependencies.forEach(visit);
  };
  visit(file);
  return out;
}
