import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { expectScenarioObserved } from "./support/client-scenario.ts";
import { startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * Debian's Go toolchain and gRPC, entirely offline (the Go module proxy is not
 * reachable): golang-go (Go 1.19), protoc from protobuf-compiler, the
 * generators protoc-gen-go and protoc-gen-go-grpc, and the libraries as
 * sources under /usr/share/gocode from golang-google-grpc-dev,
 * golang-google-protobuf-dev, golang-google-genproto-dev (errdetails) and
 * golang-github-golang-protobuf-1-5-dev. .ci/run installs them.
 *
 * The build runs in GOPATH mode (GO111MODULE=off) with
 * GOPATH=<temp>/gopath:/usr/share/gocode, rather than a module with `replace`
 * directives: Debian lays its Go packages out as a GOPATH tree with no
 * go.mod files of their own and no go.sum, so a module would need a `replace`
 * and a made-up version for every transitive dependency (grpc, x/net, x/sys,
 * x/text, genproto, both protobuf APIs...), which breaks whenever Debian's set
 * changes; GOPATH mode resolves whatever is installed, and is how Debian builds
 * these packages itself. GOPROXY=off and GOFLAGS= make sure nothing reaches
 * the network or a user's settings.
 *
 * The protos set no `go_package`: protoc's M options give the generated files
 * an import path (referralgen/referral/v1) instead, and they are generated at
 * test time into the temporary GOPATH, which is removed afterwards with the
 * build cache. The program takes google.rpc.ErrorInfo from genproto's
 * errdetails, which is generated from the same google/rpc protos as
 * proto/google/rpc/ (whose go_package names it); generating them again would
 * register google.rpc types twice.
 */
const GO = "/usr/bin/go";
const PROTOC = "/usr/bin/protoc";
const PROTOC_GEN_GO = "/usr/bin/protoc-gen-go";
const PROTOC_GEN_GO_GRPC = "/usr/bin/protoc-gen-go-grpc";
const GOCODE = "/usr/share/gocode";
const IMPORT_PATH = "referralgen/referral/v1";
const run = promisify(execFile);

function runs(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

/** The Debian packages missing, by what each one brings, if any. */
function goToolchainMissing(): string | undefined {
  const gocode = (source: string) => existsSync(path.join(GOCODE, "src", source));
  const needs: [string, boolean][] = [
    ["golang-go", runs(GO, ["version"])],
    ["protobuf-compiler", runs(PROTOC, ["--version"])],
    ["protoc-gen-go", runs(PROTOC_GEN_GO, ["--version"])],
    ["protoc-gen-go-grpc", runs(PROTOC_GEN_GO_GRPC, ["--version"])],
    ["golang-google-grpc-dev", gocode("google.golang.org/grpc/status")],
    ["golang-google-protobuf-dev", gocode("google.golang.org/protobuf/proto")],
    ["golang-google-genproto-dev", gocode("google.golang.org/genproto/googleapis/rpc/errdetails")],
    // Version 1.5 (APIv1 over APIv2), not 1.3: grpc-go 1.33 marshals with
    // it, and 1.3 panics on the messages protoc-gen-go 1.28 generates.
    ["golang-github-golang-protobuf-1-5-dev", gocode("github.com/golang/protobuf/proto/registry.go")],
  ];
  const absent = needs.filter(([, present]) => !present).map(([pkg]) => pkg);
  return absent.length === 0 ? undefined : `needs Debian's ${absent.join(", ")} (apt-get install them)`;
}

const missing = goToolchainMissing();
if (missing !== undefined) console.log(`skipping the Go client test: ${missing}`);

describe("a Go client generated from proto/", () => {
  let t: TestServer;
  let work: string;
  let binary: string;
  beforeAll(async () => {
    if (missing !== undefined) return;
    t = await startTestServer();
    work = mkdtempSync(path.join(tmpdir(), "referral-go-"));
    const gopath = path.join(work, "gopath");
    const out = path.join(gopath, "src");
    mkdirSync(out, { recursive: true });
    const protos = readdirSync("proto/referral/v1")
      .filter((f) => f.endsWith(".proto"))
      .map((f) => `referral/v1/${f}`);
    const mappings = protos.map((proto) => `M${proto}=${IMPORT_PATH};referralv1`).join(",");
    await run(PROTOC, [
      "-Iproto",
      `--plugin=protoc-gen-go=${PROTOC_GEN_GO}`,
      `--plugin=protoc-gen-go-grpc=${PROTOC_GEN_GO_GRPC}`,
      `--go_out=${out}`,
      `--go_opt=paths=import,${mappings}`,
      `--go-grpc_out=${out}`,
      `--go-grpc_opt=paths=import,${mappings}`,
      ...protos,
    ]);
    binary = path.join(work, "scenario");
    // Asynchronously, as the first build compiles grpc-go from source.
    await run(GO, ["build", "-o", binary, "./test/go/scenario"], {
      env: {
        PATH: process.env.PATH,
        HOME: work,
        GO111MODULE: "off",
        GOPATH: `${gopath}:${GOCODE}`,
        GOCACHE: path.join(work, "cache"),
        GOENV: "off",
        GOFLAGS: "",
        GOPROXY: "off",
        CGO_ENABLED: "0",
      },
    });
  }, 300_000);
  afterAll(async () => {
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it.skipIf(missing !== undefined)("runs a scenario and decodes an ErrorInfo reason", async () => {
    const programKey = unique("go");
    // Asynchronously: the server under test runs in this process.
    const { stdout: out } = await run(binary, [`127.0.0.1:${t.port}`, programKey]);
    expectScenarioObserved(out, programKey);
  });
});
