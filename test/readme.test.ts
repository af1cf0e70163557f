import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { runMigrations } from "../src/db/migrate.ts";
import { createDatabase, dropDatabase } from "./support/database.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

const run = promisify(execFile);

/** Every `npx buf curl` line of the README's fenced sh blocks, in order. */
async function readmeBufCurlCommands(): Promise<string[]> {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] ?? "");
  return blocks.flatMap((block) => block.split("\n")).filter((line) => line.startsWith("npx buf curl "));
}

/** Splits a shell line into arguments: plain words and '…' single-quoted strings. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((match) => match[1] ?? match[2] ?? "");
}

describe("README examples", () => {
  let t: TestServer;
  let databaseUrl: string;
  beforeAll(async () => {
    // A database of their own: the examples use fixed program keys.
    databaseUrl = await createDatabase(inject("adminUrl"));
    await runMigrations(databaseUrl);
    t = await startTestServer({ databaseUrl });
  });
  afterAll(async () => {
    await t?.close();
    await dropDatabase(inject("adminUrl"), databaseUrl);
  });

  it("every buf curl example runs against the real server", async () => {
    const commands = await readmeBufCurlCommands();
    expect(commands.length).toBeGreaterThanOrEqual(5);
    for (const command of commands) {
      const [, , ...args] = shellWords(command.replaceAll("http://127.0.0.1:8080", t.baseUrl));
      const { stdout } = await run("node_modules/.bin/buf", args).catch((error: { stderr?: string }) => {
        throw new Error(`${command}\n${error.stderr ?? error}`);
      });
      expect(stdout.length, command).toBeGreaterThan(0);
    }
    const { program } = await t.grpc.getProgram({ programKey: "spring-2026" });
    expect(program).toMatchObject({ name: "Spring 2026", active: false, maxRewardsPerReferrer: 10, holdDays: 14 });
    const { code } = await t.grpc.getCode({ code: "alice-2026" });
    expect(code).toMatchObject({ code: "ALICE-2026", userId: "user-7", vanity: true, usesCount: 1 });
    const { earnings } = await t.grpc.getUserEarnings({ userId: "user-7" });
    expect(earnings).toMatchObject([{ currency: "USD", totalMinor: 1500n, pendingMinor: 1500n }]);
  });
});
