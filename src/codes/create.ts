import { type DatabasePool, NotNullIntegrityConstraintViolationError, UniqueIntegrityConstraintViolationError } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import type { Clock } from "../platform/clock.ts";
import { getActiveProgram } from "../programs/manage.ts";
import type { Program } from "../programs/model.ts";
import { type CodeGenerator, formatCode } from "./generator.ts";
import type { ReferralCode } from "./model.ts";
import { findCodeByRequestId, findUsableCode, insertCode, insertCodes, usersAtCodeLimit } from "./repository.ts";
import type { CodeRequest } from "./requests.ts";

// CreateCode and BatchCreateCodes. Every conflict is settled by a unique index
// (the code, the user's slot among max_codes_per_user, the request_id), then
// retried: never check-then-insert.

export type CodeCreation = { db: DatabasePool; clock: Clock; generateCode: CodeGenerator };

/** Generated-code collisions tolerated before the code space counts as exhausted. */
const MAX_COLLISIONS = 8;
/** Attempts at one CreateCode when concurrent callers keep taking the same slot. */
const MAX_ATTEMPTS = 32;

const isUnique = (error: unknown, constraint: string) =>
  error instanceof UniqueIntegrityConstraintViolationError && error.constraint === constraint;

function codeLimitReached(program: Program, userId: string): DomainError {
  return new DomainError(
    "CODE_LIMIT_REACHED",
    `the user already holds ${program.maxCodesPerUser} codes in this program, its max_codes_per_user`,
    { programKey: program.programKey, userId },
  );
}

function codeSpaceExhausted(program: Program): DomainError {
  return new DomainError(
    "CODE_SPACE_EXHAUSTED",
    `no free code found after ${MAX_COLLISIONS} attempts: the program's code_length ${program.codeLength} is nearly used up; raise it`,
    { programKey: program.programKey },
  );
}

function tooManyConflicts(): DomainError {
  return new DomainError("CONFLICT", "too many concurrent code requests for this user; retry");
}

/** One CreateCode: replay by request_id, reuse a usable code, or insert into a free slot. */
export async function createCode({ db, clock, generateCode }: CodeCreation, request: CodeRequest): Promise<{ code: ReferralCode; existing: boolean }> {
  const program = await getActiveProgram(db, request.programKey);
  let collisions = 0;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const replay = await replayOf(db, program, request);
    if (replay !== null) return { code: replay, existing: true };
    if (request.reuseExisting) {
      const usable = await findUsableCode(db, program.id, request.userId, clock.now());
      if (usable !== null) return { code: usable, existing: true };
    }
    const code = request.vanityCode ?? formatCode(program.codePrefix, generateCode(program.codeLength));
    try {
      const newCode = {
        code,
        programId: program.id,
        userId: request.userId,
        vanity: request.vanityCode !== null,
        maxUses: request.maxUses,
        expiresAt: request.expiresAt,
        requestId: request.requestId,
        metadata: request.metadata,
        unlessUsableExists: request.reuseExisting,
      };
      const created = await withConnection(db, (connection) => insertCode(connection, newCode, clock.now()));
      if (created === null) {
        if (request.reuseExisting) {
          const usable = await findUsableCode(db, program.id, request.userId, clock.now());
          if (usable !== null) return { code: usable, existing: true };
        }
        throw codeLimitReached(program, request.userId);
      }
      return { code: created, existing: false };
    } catch (error) {
      if (isUnique(error, "referral_codes_code_key")) {
        if (request.vanityCode !== null) {
          // Taken, unless by a concurrent call with this very request_id.
          const replay = await replayOf(db, program, request);
          if (replay !== null) return { code: replay, existing: true };
          throw new DomainError("CODE_TAKEN", "this code is already taken", { field: "code", code });
        }
        if (++collisions >= MAX_COLLISIONS) throw codeSpaceExhausted(program);
        continue;
      }
      // A concurrent call took the same slot or request_id: look again.
      if (isUnique(error, "referral_codes_user_slot_key") || isUnique(error, "referral_codes_request_id_key")) continue;
      throw error;
    }
  }
  throw tooManyConflicts();
}

/** The code an earlier call with this request_id created, if any; it must be for the same request. */
async function replayOf(db: DatabasePool, program: Program, request: CodeRequest): Promise<ReferralCode | null> {
  if (request.requestId === null) return null;
  const replay = await findCodeByRequestId(db, program.id, request.requestId);
  if (replay === null) return null;
  if (replay.userId !== request.userId || (request.vanityCode !== null && request.vanityCode !== replay.code)) {
    throw new DomainError("IDEMPOTENCY_KEY_REUSED", "request_id was already used for a different code request", { field: "request_id" });
  }
  return replay;
}

/** BatchCreateCodes: one statement for the whole batch, all or nothing, retried with fresh codes on a collision. */
export async function createCodes({ db, clock, generateCode }: CodeCreation, programKey: string, userIds: readonly string[]): Promise<readonly ReferralCode[]> {
  const program = await getActiveProgram(db, programKey);
  let collisions = 0;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const codes = userIds.map(() => formatCode(program.codePrefix, generateCode(program.codeLength)));
    try {
      const created = await withConnection(db, (connection) => insertCodes(connection, { programId: program.id, userIds, codes }, clock.now()));
      const byUser = new Map(created.map((code) => [code.userId, code]));
      return userIds.map((userId) => byUser.get(userId) as ReferralCode);
    } catch (error) {
      if (error instanceof NotNullIntegrityConstraintViolationError && error.column === "slot") {
        const [full] = await usersAtCodeLimit(db, program.id, userIds);
        if (full !== undefined) throw codeLimitReached(program, full);
        continue;
      }
      if (isUnique(error, "referral_codes_code_key")) {
        if (++collisions >= MAX_COLLISIONS) throw codeSpaceExhausted(program);
        continue;
      }
      if (isUnique(error, "referral_codes_user_slot_key")) continue;
      throw error;
    }
  }
  throw tooManyConflicts();
}
