import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import { z } from "zod";
import { decodePageToken, page } from "../api/pagination.ts";
import { type ReferralCodeService, ValidateCodeResponse_Reason as Reason } from "../gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "../platform/clock.ts";
import { toRefereeRewardMessage } from "../programs/mapper.ts";
import { createCode, createCodes } from "./create.ts";
import type { CodeGenerator } from "./generator.ts";
import { getCode, updateCode } from "./manage.ts";
import { toCodeMessage, toRewardMessage } from "./mapper.ts";
import { listCodes } from "./repository.ts";
import { parseBatchCreateCodes, parseCodeLookup, parseCreateCode, parseListCodes, parseUpdateCode, parseValidateCode } from "./requests.ts";
import { createCodeValidator } from "./validate-code.ts";

type CodeMethods = Pick<
  ServiceImpl<typeof ReferralCodeService>,
  "createCode" | "batchCreateCodes" | "getCode" | "listCodes" | "updateCode" | "validateCode"
>;

const codeId = z.string().regex(/^\d{1,19}$/).refine((id) => BigInt(id) <= 9_223_372_036_854_775_807n);

/** The code RPCs: decode the request, call the use case (a plain read: the repository), encode. */
export function createCodeHandlers(deps: { db: DatabasePool; reads: DatabasePool; clock: Clock; generateCode: CodeGenerator }): CodeMethods {
  const { db, reads, clock } = deps;
  const validateCode = createCodeValidator(db);
  return {
    async createCode(request) {
      const { code, existing } = await createCode(deps, parseCreateCode(request, clock.now()));
      return { code: toCodeMessage(code, clock.now()), existing };
    },

    async batchCreateCodes(request) {
      const { programKey, userIds } = parseBatchCreateCodes(request);
      const created = await createCodes(deps, programKey, userIds);
      const now = clock.now();
      return { codes: created.map((code) => toCodeMessage(code, now)) };
    },

    async getCode(request) {
      return { code: toCodeMessage(await getCode(reads, parseCodeLookup(request.code)), clock.now()) };
    },

    async listCodes(request) {
      const input = parseListCodes(request);
      const filters = { userId: input.userId, programKey: input.programKey, status: input.status };
      const after = decodePageToken(input.pageToken, filters, z.tuple([codeId]));
      const now = clock.now();
      const rows = await listCodes(reads, { ...filters, afterId: after === null ? null : BigInt(after[0]), limit: input.pageSize + 1 }, now);
      const { items, nextPageToken } = page(rows, input.pageSize, (code) => [code.id.toString()], filters);
      return { codes: items.map((code) => toCodeMessage(code, now)), nextPageToken };
    },

    async updateCode(request) {
      const { code, changes } = parseUpdateCode(request);
      return { code: toCodeMessage(await updateCode(db, code, changes), clock.now()) };
    },

    async validateCode(request) {
      const now = clock.now();
      const validation = await validateCode(parseValidateCode(request), now);
      if (validation === null) return { valid: false, reason: Reason.CODE_NOT_FOUND };
      const { code, reason, reward, refereeReward, refereeRewardMinor } = validation;
      return {
        valid: reason === null,
        reason: reason === null ? Reason.UNSPECIFIED : Reason[reason],
        code: toCodeMessage(code, now),
        reward: toRewardMessage(reward),
        refereeReward: refereeReward === null ? undefined : toRefereeRewardMessage(refereeReward),
        refereeRewardMinor: refereeRewardMinor ?? undefined,
      };
    },
  };
}
