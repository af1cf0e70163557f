import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import { z } from "zod";
import { pageSize, parseInput, programKey } from "../api/input.ts";
import { decodePageToken, page } from "../api/pagination.ts";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import { createProgram, getProgram, updateProgram } from "./manage.ts";
import { toProgramMessage } from "./mapper.ts";
import { listPrograms } from "./repository.ts";
import { parseNewProgram, parseProgramUpdate } from "./requests.ts";

type ProgramMethods = Pick<ServiceImpl<typeof ReferralCodeService>, "createProgram" | "getProgram" | "listPrograms" | "updateProgram">;

const listRequest = z.object({ pageSize, pageToken: z.string().max(1024), active: z.boolean().optional() });

/** The program RPCs: decode the request, call the use case (a plain read: the repository), encode. */
export function createProgramHandlers({ operators, reads }: { operators: DatabasePool; reads: DatabasePool }): ProgramMethods {
  return {
    async createProgram(request) {
      return { program: toProgramMessage(await createProgram(operators, parseNewProgram(request.program))) };
    },

    async getProgram(request) {
      return { program: toProgramMessage(await getProgram(reads, parseInput(programKey, request.programKey, "program_key"))) };
    },

    async listPrograms(request) {
      const input = parseInput(listRequest, request);
      const filters = { active: input.active ?? null };
      const after = decodePageToken(input.pageToken, filters, z.tuple([programKey]));
      const rows = await listPrograms(reads, { active: filters.active, afterKey: after === null ? null : after[0], limit: input.pageSize + 1 });
      const { items, nextPageToken } = page(rows, input.pageSize, (program) => [program.programKey], filters);
      return { programs: items.map(toProgramMessage), nextPageToken };
    },

    async updateProgram(request) {
      const { programKey: key, changes } = parseProgramUpdate(request);
      return { program: toProgramMessage(await updateProgram(operators, key, changes)) };
    },
  };
}
