/**
 * The physical limit for (1): a bare @grpc/grpc-js server that answers
 * ReferralCodeService/ValidateCode by echoing the request bytes, with no
 * decoding, no database and no interceptors. Prints its port on stdout.
 */
import * as grpc from "@grpc/grpc-js";

const identity = (bytes: Buffer) => bytes;
const server = new grpc.Server();
server.addService(
  {
    validateCode: {
      path: "/referral.v1.ReferralCodeService/ValidateCode",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  { validateCode: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, call.request) },
);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${port}\n`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
