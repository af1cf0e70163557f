import type { ServiceImpl } from "@connectrpc/connect";
import { type DatabasePool, UniqueIntegrityConstraintViolationError, CheckIntegrityConstraintViolationError } from "slonik";
import { z } from "zod";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import { transaction } from "../db/transaction.ts";
import { DomainError } from "../errors.ts";
import { decodePageToken, page } from "../pagination.ts";
import { pageSize, parseInput, programKey } from "../validation.ts";
import { toProgramMessage } from "./mapper.ts";
import { findProgramByKey, insertProgram, listPrograms, lockProgramByKey, updateProgram } from "./repository.ts";
import { checkRewardRule, parseNewProgram, parseProgramUpdate } from "./validation.ts";

type ProgramMethods = Pick<ServiceImpl<typeof ReferralCodeService>, "createProgram" | "getProgram" | "listPrograms" | "updateProgram">;

export function programNotFound(key: string): DomainError {
  return new DomainError("PROGRAM_NOT_FOUND", `program ${JSON.stringify(key)} does not exist`, { program_key: key });
}

/** Constraint violations a caller can cause, as the errors they get. */
function programWriteError(error: unknown, key: string): unknown {
  if (error instanceof UniqueIntegrityConstraintViolationError) {
    if (error.constraint === "referral_programs_program_key_key") {
      return new DomainError("PROGRAM_KEY_TAKEN", `program key ${JSON.stringify(key)} is already used`, { field: "program.program_key", program_key: key });
    }
    if (error.constraint === "referral_programs_name_key") {
      return new DomainError("PROGRAM_KEY_TAKEN", "another program already has this name", { field: "program.name", program_key: key });
    }
  }
  if (error instanceof CheckIntegrityConstraintViolationError && error.constraint === "referral_programs_within_budget") {
    return new DomainError("BUDGET_BELOW_GRANTED", "budget_minor cannot be lower than the rewards already granted", { field: "program.budget_minor", program_key: key });
  }
  return error;
}

const listRequest = z.object({ pageSize, pageToken: z.string().max(1024), active: z.boolean().optional() });

export function createProgramHandlers(db: DatabasePool): ProgramMethods {
  return {
    async createProgram(request) {
      const program = parseNewProgram(request.program);
      const created = await insertProgram(db, program).catch((error: unknown) => {
        throw programWriteError(error, program.programKey);
      });
      return { program: toProgramMessage(created) };
    },

    async getProgram(request) {
      const key = parseInput(programKey, request.programKey, "program_key");
      const program = await findProgramByKey(db, key);
      if (program === null) throw programNotFound(key);
      return { program: toProgramMessage(program) };
    },

    async listPrograms(request) {
      const input = parseInput(listRequest, request);
      const filters = { active: input.active ?? null };
      const after = decodePageToken(input.pageToken, filters, z.tuple([programKey]));
      const rows = await listPrograms(db, {
        active: filters.active,
        afterKey: after === null ? null : after[0],
        limit: input.pageSize + 1,
      });
      const { items, nextPageToken } = page(rows, input.pageSize, (program) => [program.programKey], filters);
      return { programs: items.map(toProgramMessage), nextPageToken };
    },

    async updateProgram(request) {
      const { programKey: key, changes } = parseProgramUpdate(request);
      const updated = await transaction(db, async (tx) => {
        const current = await lockProgramByKey(tx, key);
        if (current === null) throw programNotFound(key);
        checkRewardRule({ ...current, ...changes });
        return updateProgram(tx, current, changes);
      }).catch((error: unknown) => {
        throw programWriteError(error, key);
      });
      return { program: toProgramMessage(updated) };
    },
  };
}
