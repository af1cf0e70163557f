import type { MessageInitShape } from "@bufbuild/protobuf";
import { sql } from "slonik";
import { z } from "zod";
import type { Program, ProgramSchema } from "../../src/gen/referral/v1/resources_pb.js";
import { RewardKind } from "../../src/gen/referral/v1/resources_pb.js";
import { type TestServer, unique } from "./server.ts";

/** Creates a FIXED 15.00 USD program with a unique key, plus any overrides. */
export async function createProgram(t: Pick<TestServer, "grpc">, overrides: MessageInitShape<typeof ProgramSchema> = {}): Promise<Program> {
  const key = unique("prog");
  const { program } = await t.grpc.createProgram({
    program: {
      programKey: key,
      name: `Program ${key}`,
      rewardKind: RewardKind.FIXED,
      rewardAmountMinor: 1500n,
      rewardCurrency: "USD",
      ...overrides,
    },
  });
  if (program === undefined) throw new Error("no program returned");
  return program;
}

/** Rows of referral_codes held by one user in one program. */
export async function codeCount(t: TestServer, programKey: string, userId?: string): Promise<number> {
  return t.db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT count(*)::int AS count FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE p.program_key = ${programKey} AND (${userId ?? null}::text IS NULL OR c.user_id = ${userId ?? null})
  `);
}
