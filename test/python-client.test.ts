import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectScenarioObserved } from "./support/client-scenario.ts";
import { startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * Debian's Python with python3-grpcio, and the code generators: protoc from
 * protobuf-compiler with grpc_python_plugin from protobuf-compiler-grpc (grpc
 * 1.51, the same as python3-grpcio). .ci/run installs them. Debian's
 * python3-grpc-tools is not used: its bundled protoc predates proto3
 * `optional`, which this API uses for nullable limits.
 */
const PYTHON = "/usr/bin/python3";
const run = promisify(execFile);
const PROTOC = "/usr/bin/protoc";
const GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin";

function pythonGrpcMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import grpc"], { stdio: "pipe" });
    execFileSync(PROTOC, ["--version"], { stdio: "pipe" });
    execFileSync("test", ["-x", GRPC_PYTHON_PLUGIN]);
    return undefined;
  } catch {
    return "needs Debian's python3-grpcio, protobuf-compiler and protobuf-compiler-grpc (apt-get install them)";
  }
}

const missing = pythonGrpcMissing();
if (missing !== undefined) console.log(`skipping the Python client test: ${missing}`);

describe("a Python client generated from proto/", () => {
  let t: TestServer;
  let generated: string;
  beforeAll(async () => {
    if (missing !== undefined) return;
    t = await startTestServer();
    generated = mkdtempSync(path.join(tmpdir(), "referral-python-"));
    const protos = ["referral/v1", "google/rpc"].flatMap((dir) =>
      readdirSync(path.join("proto", dir)).filter((f) => f.endsWith(".proto")).map((f) => `${dir}/${f}`),
    );
    execFileSync(
      PROTOC,
      ["-Iproto", `--python_out=${generated}`, `--grpc_python_out=${generated}`, `--plugin=protoc-gen-grpc_python=${GRPC_PYTHON_PLUGIN}`, ...protos],
      { stdio: "pipe" },
    );
  });
  afterAll(async () => {
    await t?.close();
    if (generated) rmSync(generated, { recursive: true, force: true });
  });

  it.skipIf(missing !== undefined)("runs a scenario and decodes an ErrorInfo reason", async () => {
    const programKey = unique("python");
    // Asynchronously: the server under test runs in this process.
    const { stdout: out } = await run(PYTHON, ["test/python/scenario.py", generated, `127.0.0.1:${t.port}`, programKey]);
    expectScenarioObserved(out, programKey);
    expect(JSON.parse(out)).toMatchObject({
      events: ["EVENT_TYPE_PROGRAM_CREATED", "EVENT_TYPE_CODE_CREATED", "EVENT_TYPE_REFERRAL_CREATED"],
      events_after_cursor: 0,
    });
  });
});
