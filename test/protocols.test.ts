import { execFile } from "node:child_process";
import http2 from "node:http2";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../src/gen/google/rpc/status_pb.js";
import { ReferralCodeService, ValidateCodeResponse_Reason as Reason } from "../src/gen/referral/v1/referral_code_service_pb.js";
import type { GrpcCallError } from "./support/grpc-js-client.ts";
import { programWithCode } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

/**
 * Every client reaches the service: plain HTTP/1.1 clients on the main
 * cleartext port (Connect from curl, gRPC-Web through HTTP/1.1), bad UTF-8
 * refused as INVALID_ARGUMENT on both ports, and grpc-message readable by
 * grpc-js clients.
 */
const run = promisify(execFile);

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

describe("HTTP/1.1 on the main cleartext port", () => {
  it("plain curl calls ValidateCode with the Connect protocol and JSON", async () => {
    const { code } = await programWithCode(t);
    const { stdout } = await run("curl", [
      "-sS", "--http1.1", "-w", "\\n%{http_version} %{http_code}",
      "-H", "content-type: application/json",
      "-d", JSON.stringify({ code: code.code.toLowerCase(), referredUserId: "friend" }),
      `${t.baseUrl}/referral.v1.ReferralCodeService/ValidateCode`,
    ]);
    const [body, status] = stdout.split("\n");
    expect(status).toBe("1.1 200");
    expect(JSON.parse(body!)).toMatchObject({ valid: true, code: { code: code.code } });
  });

  it("plain curl gets a Connect error as JSON with its ErrorInfo", async () => {
    const { stdout } = await run("curl", [
      "-sS", "--http1.1", "-w", "\\n%{http_code}",
      "-H", "content-type: application/json",
      "-d", JSON.stringify({ programKey: "no-such-program" }),
      `${t.baseUrl}/referral.v1.ReferralCodeService/GetProgram`,
    ]);
    const [body, status] = stdout.split("\n");
    expect(status).toBe("404");
    expect(JSON.parse(body!)).toMatchObject({ code: "not_found", details: [expect.objectContaining({ type: "google.rpc.ErrorInfo" })] });
  });

  it.each([
    ["Connect", createConnectTransport],
    ["gRPC-Web", createGrpcWebTransport],
  ] as const)("a %s client over HTTP/1.1 creates and validates codes", async (_protocol, transport) => {
    const client = createClient(ReferralCodeService, transport({ baseUrl: t.baseUrl, httpVersion: "1.1" }));
    const { program, code } = await programWithCode({ grpc: client });
    expect((await client.validateCode({ code: code.code })).valid).toBe(true);
    expect((await client.getProgram({ programKey: program.programKey })).program?.programKey).toBe(program.programKey);
    expect((await callError(client.getProgram({ programKey: "no-such-program" }))).info?.reason).toBe("PROGRAM_NOT_FOUND");
  });

  it("HTTP/2 with prior knowledge still works beside it on the same port", async () => {
    const { code } = await programWithCode(t);
    expect((await t.grpc.validateCode({ code: code.code })).valid).toBe(true);
    expect((await t.connect.validateCode({ code: code.code })).valid).toBe(true);
  });
});

/** A ValidateCodeRequest whose `code` holds an unpaired surrogate encoded as raw bytes: not valid UTF-8. */
const badUtf8Request = Buffer.from([0x0a, 0x05, 0x41, 0x42, 0xed, 0xa0, 0x80]);

/** One gRPC call with a raw request body, over HTTP/2: the status and the ErrorInfo from the trailers. */
async function rawGrpcCall(port: number, path: string, message: Buffer) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    stream.end(frame);
    const fields: Record<string, unknown> = {};
    stream.on("response", (headers) => Object.assign(fields, headers));
    stream.on("trailers", (trailers) => Object.assign(fields, trailers));
    stream.resume();
    await new Promise((resolve) => stream.on("close", resolve));
    const details = fields["grpc-status-details-bin"];
    const status = typeof details === "string" ? fromBinary(StatusSchema, Buffer.from(details, "base64")) : undefined;
    const info = status?.details.map((any) => anyUnpack(any, ErrorInfoSchema)).find((m) => m !== undefined);
    return { status: Number(fields["grpc-status"]), message: String(fields["grpc-message"] ?? ""), info };
  } finally {
    session.close();
  }
}

describe("text that is not valid UTF-8", () => {
  it.each([
    ["the main port", () => t.port],
    ["the grpc-js port", () => t.grpcJsPort],
  ])("is INVALID_ARGUMENT naming the field on %s", async (_port, port) => {
    const answer = await rawGrpcCall(port(), "/referral.v1.ReferralCodeService/ValidateCode", badUtf8Request);
    expect(answer.status).toBe(Code.InvalidArgument);
    expect(answer.info).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field: "code" } });
  });

  it.each([
    ["the main port", () => t.port],
    ["the grpc-js port", () => t.grpcJsPort],
  ])("in a map key is INVALID_ARGUMENT naming the key, shown well-formed, on %s", async (_port, port) => {
    // CreateCodeRequest.metadata (field 6) with one entry whose key is "k" + an unpaired surrogate.
    const key = Buffer.from([0x6b, 0xed, 0xa0, 0x80]);
    const entry = Buffer.concat([Buffer.from([0x0a, key.length]), key, Buffer.from([0x12, 0x01, 0x76])]);
    const request = Buffer.concat([Buffer.from([0x32, entry.length]), entry]);
    const answer = await rawGrpcCall(port(), "/referral.v1.ReferralCodeService/CreateCode", request);
    expect(answer.status).toBe(Code.InvalidArgument);
    expect(answer.info?.metadata.field).toMatch(/^metadata\.k/);
    expect(answer.info?.metadata.field?.isWellFormed()).toBe(true);
  });

  it("is INVALID_ARGUMENT for a Connect client sending a lone surrogate in JSON", async () => {
    const { stdout } = await run("curl", [
      "-sS", "-w", "\\n%{http_code}", "-H", "content-type: application/json",
      "-d", '{"code":"AB\\ud800","referredUserId":"x"}',
      `${t.baseUrl}/referral.v1.ReferralCodeService/ValidateCode`,
    ]);
    const [body, status] = stdout.split("\n");
    expect(status).toBe("400");
    expect(JSON.parse(body!)).toMatchObject({ code: "invalid_argument" });
  });
});

describe("grpc-message", () => {
  it("reaches a grpc-js client on the main port as written, ':' and ',' included", async () => {
    const error = await t.grpcJs.unary(ReferralCodeService.method.listPrograms, { pageToken: "forged" }).then(
      () => undefined,
      (e: unknown) => e as GrpcCallError,
    );
    expect(error?.message).toBe("page_token: is not a token returned by this method with the same filters");
  });

  it("is encoded as the gRPC spec asks: only non-printable bytes and '%'", async () => {
    const answer = await rawGrpcCall(t.port, "/referral.v1.ReferralCodeService/GetProgram", Buffer.from([0x0a, 0x02, 0x41, 0x42]));
    expect(answer.status).toBe(Code.InvalidArgument);
    expect(answer.message).toMatch(/^program_key: must match \[a-z0-9\]\[a-z0-9_-\]\{0,99\}$/);
  });
});
