import {
  CheckIntegrityConstraintViolationError,
  type DatabasePool,
  type DatabasePoolConnection,
  UniqueIntegrityConstraintViolationError,
} from "slonik";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import type { NewProgram, Program, ProgramSettings } from "./model.ts";
import {
  findProgramByKey,
  findVersionedProgramByKey,
  holdConversionWrites,
  insertProgram,
  startsBudget,
  updateProgram as writeProgramChanges,
  type VersionedProgram,
} from "./repository.ts";
import { checkPayoutRange, checkRewardRule } from "./requests.ts";

// Creating, reading and changing programs.

/** Attempts at an update while other updates of the program keep landing between its read and its write. */
const MAX_UPDATE_ATTEMPTS = 20;

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
 * Applies the masked changes to the program as read, checking the rules
 * across fields on the result, in one conditional UPDATE that writes only to
 * the version read; when another update landed in between, reads again and
 * retries. The UPDATE takes the row's non-key lock, which conversions'
 * key-share locks do not block, so it lands while conversions stream in
 * (see `writeProgramChanges`); a conversion whose write starts after it
 * committed sees the change. One pooled connection for it all: under load a
 * call waits for the pool at each checkout.
 */
export async function updateProgram(db: DatabasePool, key: string, changes: Partial<ProgramSettings>): Promise<Program> {
  return withConnection(db, async (connection) => {
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const current = await findVersionedProgramByKey(connection, key);
      if (current === null) throw programNotFound(key);
      checkRewardRule({ ...current.program, ...changes });
      checkPayoutRange({ ...current.program, ...changes });
      const updated = await writeChanges(connection, current, changes).catch((error: unknown) => {
        throw programWriteError(error, key);
      });
      if (updated !== null) return updated;
    }
    throw new DomainError("CONFLICT", "the program kept changing under this update; retry", { programKey: key });
  });
}

/**
 * One statement, except for a budget set where there was none: the rewards
 * standing are counted with conversion writes held off, so that none in
 * flight, decided without the budget, is missed.
 */
async function writeChanges(connection: DatabasePoolConnection, current: VersionedProgram, changes: Partial<ProgramSettings>): Promise<Program | null> {
  if (!startsBudget(current.program, changes)) return writeProgramChanges(connection, current, changes);
  return connection.transaction(async (tx) => {
    await holdConversionWrites(tx);
    return writeProgramChanges(tx, current, changes);
  });
}
