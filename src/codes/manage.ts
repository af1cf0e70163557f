import { CheckIntegrityConstraintViolationError, type DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import type { ReferralCode } from "./model.ts";
import { type CodeChanges, findCode, updateCode as writeCodeChanges } from "./repository.ts";

// Reading and changing one code.

function codeNotFound(code: string): DomainError {
  return new DomainError("CODE_NOT_FOUND", "no such referral code", { code });
}

export async function getCode(db: DatabasePool, code: string): Promise<ReferralCode> {
  const found = await findCode(db, code);
  if (found === null) throw codeNotFound(code);
  return found;
}

/** The masked changes in one statement; the database refuses max_uses below uses_count. */
export async function updateCode(db: DatabasePool, code: string, changes: CodeChanges): Promise<ReferralCode> {
  const updated = await writeCodeChanges(db, code, changes).catch((error: unknown) => {
    if (error instanceof CheckIntegrityConstraintViolationError && error.constraint === "referral_codes_within_max_uses") {
      throw new DomainError("MAX_USES_BELOW_USES_COUNT", "max_uses cannot be lower than the code's uses_count", { field: "code.max_uses", code });
    }
    throw error;
  });
  if (updated === null) throw codeNotFound(code);
  return updated;
}
