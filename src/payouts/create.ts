import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { transaction } from "../db/transaction.ts";
import type { Clock } from "../platform/clock.ts";
import { findProgramByKey } from "../programs/repository.ts";
import type { PayoutRun } from "./model.ts";
import { claimRun, makePayouts, runPayouts } from "./repository.ts";

export type PayoutRunRequest = { currency: string; programKey: string | null; requestId: string };

/**
 * CreatePayouts, in one transaction: claims the request_id, then makes the
 * run's payouts in one statement (src/payouts/repository.ts makePayouts). A
 * retry with the same request_id answers what the first call made; with other
 * parameters it fails IDEMPOTENCY_KEY_REUSED.
 */
export async function createPayouts(deps: { db: DatabasePool; clock: Clock }, request: PayoutRunRequest): Promise<PayoutRun> {
  return transaction(deps.db, async (tx) => {
    let programId: bigint | null = null;
    if (request.programKey !== null) {
      const program = await findProgramByKey(tx, request.programKey);
      if (program === null) throw new DomainError("PROGRAM_NOT_FOUND", "no such program", { programKey: request.programKey });
      programId = program.id;
    }
    const { created, run } = await claimRun(tx, { requestId: request.requestId, currency: request.currency, programId });
    let skipped: Pick<PayoutRun, "skippedWithoutAccount" | "skippedBelowMinimum"> = run;
    if (!created) {
      if (run.currency !== request.currency || run.programId !== programId) {
        throw new DomainError("IDEMPOTENCY_KEY_REUSED", "request_id was used by a CreatePayouts call with other parameters", { field: "request_id" });
      }
    } else {
      skipped = await makePayouts(tx, { requestId: request.requestId, currency: request.currency, programId, now: deps.clock.now() });
    }
    return {
      payouts: [...(await runPayouts(tx, request.requestId))],
      skippedWithoutAccount: skipped.skippedWithoutAccount,
      skippedBelowMinimum: skipped.skippedBelowMinimum,
    };
  });
}
