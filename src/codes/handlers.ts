import type { ServiceImpl } from "@connectrpc/connect";
import {
  CheckIntegrityConstraintViolationError,
  type DatabasePool,
  NotNullIntegrityConstraintViolationError,
  UniqueIntegrityConstraintViolationError,
} from "slonik";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import { ValidateCodeResponse_Reason as Reason } from "../gen/referral/v1/referral_code_service_pb.js";
import { z } from "zod";
import type { Clock } from "../clock.ts";
import { createBatcher } from "../db/batcher.ts";
import { withConnection } from "../db/transaction.ts";
import { outsideCallDeadline } from "../deadline.ts";
import { DomainError } from "../errors.ts";
import { decodePageToken, page } from "../pagination.ts";
import { programNotFound } from "../programs/handlers.ts";
import type { Program } from "../programs/model.ts";
import { findProgramByKey } from "../programs/repository.ts";
import { rewardRuleFor } from "../programs/reward.ts";
import { type CodeGenerator, formatCode } from "./generator.ts";
import { toCodeMessage, toRewardMessage } from "./mapper.ts";
import type { ReferralCode } from "./model.ts";
import { unusableReason } from "./usability.ts";
import {
  findCode,
  findCodeByRequestId,
  findCodesForValidation,
  findUsableCode,
  insertCode,
  insertCodes,
  listCodes,
  updateCode,
  usersAtCodeLimit,
} from "./repository.ts";
import {
  type CodeRequest,
  parseBatchCreateCodes,
  parseCodeLookup,
  parseCreateCode,
  parseListCodes,
  parseUpdateCode,
  parseValidateCode,
} from "./validation.ts";

type CodeMethods = Pick<
  ServiceImpl<typeof ReferralCodeService>,
  "createCode" | "batchCreateCodes" | "getCode" | "listCodes" | "updateCode" | "validateCode"
>;

export type CodeDependencies = {
  db: DatabasePool;
  clock: Clock;
  generateCode: CodeGenerator;
};

/** Generated-code collisions tolerated before the code space counts as exhausted. */
const MAX_COLLISIONS = 8;
/** Attempts at one CreateCode when concurrent callers keep taking the same place. */
const MAX_ATTEMPTS = 32;

const isUnique = (error: unknown, constraint: string) =>
  error instanceof UniqueIntegrityConstraintViolationError && error.constraint === constraint;

function codeNotFound(code: string): DomainError {
  return new DomainError("CODE_NOT_FOUND", "no such referral code", { code });
}

function codeLimitReached(program: Program, userId: string): DomainError {
  return new DomainError(
    "CODE_LIMIT_REACHED",
    `the user already holds ${program.maxCodesPerUser} codes in this program, its max_codes_per_user`,
    { program_key: program.programKey, user_id: userId },
  );
}

function codeSpaceExhausted(program: Program): DomainError {
  return new DomainError(
    "CODE_SPACE_EXHAUSTED",
    `no free code found after ${MAX_COLLISIONS} attempts: the program's code_length ${program.codeLength} is nearly used up; raise it`,
    { program_key: program.programKey },
  );
}

function tooManyConflicts(): DomainError {
  return new DomainError("CONFLICT", "too many concurrent code requests for this user; retry");
}

async function activeProgram(db: DatabasePool, programKey: string): Promise<Program> {
  const program = await findProgramByKey(db, programKey);
  if (program === null) throw programNotFound(programKey);
  if (!program.active) throw new DomainError("PROGRAM_INACTIVE", "the program is not active", { program_key: programKey });
  return program;
}

/** Concurrent ValidateCode calls share queries, each of up to this many lookups. */
const VALIDATION_BATCH = 64;

export function createCodeHandlers({ db, clock, generateCode }: CodeDependencies): CodeMethods {
  // Coalesced reads: under load one query answers many ValidateCode calls; a
  // shared query runs outside any one caller's deadline (each caller still
  // gives up at its own). The lookups read in one turn of the event loop go
  // out together; three queries in flight keep the database busy while the
  // answers of another are sent (18,100-18,300 calls/s under h2load against
  // 16,700-17,900 with two), and a slow lookup (a tiered program's count for
  // a heavy referrer) holds up only its own batch.
  const findForValidation = createBatcher(
    (lookups: readonly { code: string; referredUserId: string | null }[]) =>
      outsideCallDeadline(() => findCodesForValidation(db, lookups)),
    // The same code for the same (or no) referred user: one lookup, one answer.
    { maxBatch: VALIDATION_BATCH, maxInFlight: 3, identity: ({ code, referredUserId }) => JSON.stringify([code, referredUserId]) },
  );

  /**
   * One CreateCode: replay by request_id, reuse a usable code, or insert into
   * a free place. Every conflict is settled by a unique index, then retried.
   */
  async function createCode(request: CodeRequest): Promise<{ code: ReferralCode; existing: boolean }> {
    const program = await activeProgram(db, request.programKey);
    let collisions = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const replay = await replayOf(program, request);
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
            const replay = await replayOf(program, request);
            if (replay !== null) return { code: replay, existing: true };
            throw new DomainError("CODE_TAKEN", "this code is already taken", { field: "code", code });
          }
          if (++collisions >= MAX_COLLISIONS) throw codeSpaceExhausted(program);
          continue;
        }
        // A concurrent call took the same place or request_id: look again.
        if (isUnique(error, "referral_codes_user_slot_key") || isUnique(error, "referral_codes_request_id_key")) continue;
        throw error;
      }
    }
    throw tooManyConflicts();
  }

  /** The code an earlier call with this request_id created, if any; it must be for the same request. */
  async function replayOf(program: Program, request: CodeRequest): Promise<ReferralCode | null> {
    if (request.requestId === null) return null;
    const replay = await findCodeByRequestId(db, program.id, request.requestId);
    if (replay === null) return null;
    if (replay.userId !== request.userId || (request.vanityCode !== null && request.vanityCode !== replay.code)) {
      throw new DomainError("IDEMPOTENCY_KEY_REUSED", "request_id was already used for a different code request", {
        field: "request_id",
      });
    }
    return replay;
  }

  /** One statement for the whole batch, retried with fresh codes on a collision. */
  async function createCodes(program: Program, userIds: readonly string[]): Promise<readonly ReferralCode[]> {
    let collisions = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const codes = userIds.map(() => formatCode(program.codePrefix, generateCode(program.codeLength)));
      try {
        return await withConnection(db, (connection) => insertCodes(connection, { programId: program.id, userIds, codes }, clock.now()));
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

  return {
    async createCode(request) {
      const now = clock.now();
      const { code, existing } = await createCode(parseCreateCode(request, now));
      return { code: toCodeMessage(code, clock.now()), existing };
    },

    async batchCreateCodes(request) {
      const { programKey, userIds } = parseBatchCreateCodes(request);
      const program = await activeProgram(db, programKey);
      const created = await createCodes(program, userIds);
      const byUser = new Map(created.map((code) => [code.userId, code]));
      const now = clock.now();
      return { codes: userIds.map((userId) => toCodeMessage(byUser.get(userId) as ReferralCode, now)) };
    },

    async getCode(request) {
      const codeText = parseCodeLookup(request.code);
      const code = await findCode(db, codeText);
      if (code === null) throw codeNotFound(codeText);
      return { code: toCodeMessage(code, clock.now()) };
    },

    async listCodes(request) {
      const input = parseListCodes(request);
      const filters = { userId: input.userId, programKey: input.programKey, status: input.status };
      const after = decodePageToken(input.pageToken, filters, z.tuple([z.string().regex(/^\d{1,19}$/).refine((id) => BigInt(id) <= 9_223_372_036_854_775_807n)]));
      const now = clock.now();
      const rows = await listCodes(
        db,
        { ...filters, afterId: after === null ? null : BigInt(after[0]), limit: input.pageSize + 1 },
        now,
      );
      const { items, nextPageToken } = page(rows, input.pageSize, (code) => [code.id.toString()], filters);
      return { codes: items.map((code) => toCodeMessage(code, now)), nextPageToken };
    },

    async updateCode(request) {
      const { code: codeText, changes } = parseUpdateCode(request);
      const updated = await updateCode(db, codeText, changes).catch((error: unknown) => {
        if (error instanceof CheckIntegrityConstraintViolationError && error.constraint === "referral_codes_within_max_uses") {
          throw new DomainError("MAX_USES_BELOW_USES_COUNT", "max_uses cannot be lower than the code's uses_count", {
            field: "code.max_uses",
            code: codeText,
          });
        }
        throw error;
      });
      if (updated === null) throw codeNotFound(codeText);
      return { code: toCodeMessage(updated, clock.now()) };
    },

    async validateCode(request) {
      const { code, referredUserId } = parseValidateCode(request);
      const found = await findForValidation({ code, referredUserId });
      if (found === null) return { valid: false, reason: Reason.CODE_NOT_FOUND };
      const now = clock.now();
      const reason = unusableReason(found.code, found.program, found.referredUser, now);
      return {
        valid: reason === null,
        reason: reason === null ? Reason.UNSPECIFIED : Reason[reason],
        code: toCodeMessage(found.code, now),
        reward: toRewardMessage(rewardRuleFor(found.program, found.referrerRewards)),
      };
    },
  };
}
