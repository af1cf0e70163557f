import { CheckIntegrityConstraintViolationError, type DatabasePool, UniqueIntegrityConstraintViolationError } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { transaction } from "../db/transaction.ts";
import type { NewProgram, Program, ProgramSettings } from "./model.ts";
import { findProgramByKey, insertProgram, lockProgramByKey, updateProgram as writeProgramChanges } from "./repository.ts";
import { checkPayoutRange, checkRewardRule } from "./requests.ts";

// Creating, reading and changing programs.

function programNotFound(key: string): DomainError {
  return new DomainError("PROGRAM_NOT_FOUND", `program ${JSON.stringify(key)} does not exist`, { programKey: key });
}

/** Constraint violations a caller can cause, as the errors they get. */
function programWriteError(error: unknown, key: string): unknown {
  if (error instanceof UniqueIntegrityConstraintViolationError) {
    if (error.constraint === "referral_programs_program_key_key") {
      return new DomainError("PROGRAM_KEY_TAKEN", `program key ${JSON.stringify(key)} is already used`, { field: "program.program_key", programKey: key });
    }
    if (error.constraint === "referral_programs_name_key") {
      return new DomainError("PROGRAM_KEY_TAKEN", "another program already has this name", { field: "program.name", programKey: key });
    }
  }
  if (error instanceof CheckIntegrityConstraintViolationError && error.constraint === "referral_programs_within_budget") {
    return new DomainError("BUDGET_BELOW_GRANTED", "budget_minor cannot be lower than the rewards already granted", {
      field: "program.budget_minor",
      programKey: key,
    });
  }
  return error;
}

export async function createProgram(db: DatabasePool, program: NewProgram): Promise<Program> {
  return insertProgram(db, program).catch((error: unknown) => {
    throw programWriteError(error, program.programKey);
  });
}

export async function getProgram(db: DatabasePool, key: string): Promise<Program> {
  const program = await findProgramByKey(db, key);
  if (program === null) throw programNotFound(key);
  return program;
}

/** The program, which must be active to hand out codes. */
export async function getActiveProgram(db: DatabasePool, key: string): Promise<Program> {
  const program = await getProgram(db, key);
  if (!program.active) throw new DomainError("PROGRAM_INACTIVE", "the program is not active", { programKey: key });
  return program;
}

/**
 * Applies the masked changes under the program's row lock, so the reward rule
 * is checked against the program as it is written; conversions in flight
 * finish first (they hold a key-share lock), so a budget set now counts them.
 */
export async function updateProgram(db: DatabasePool, key: string, changes: Partial<ProgramSettings>): Promise<Program> {
  return transaction(db, async (tx) => {
    const current = await lockProgramByKey(tx, key);
    if (current === null) throw programNotFound(key);
    checkRewardRule({ ...current, ...changes });
    checkPayoutRange({ ...current, ...changes });
    return writeProgramChanges(tx, current, changes);
  }).catch((error: unknown) => {
    throw programWriteError(error, key);
  });
}
