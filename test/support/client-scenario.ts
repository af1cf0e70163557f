import { expect } from "vitest";

/**
 * What a generated client's scenario (test/python/scenario.py,
 * test/go/scenario/main.go) prints: a program created, a code validated, a
 * conversion recorded, a self-referral refused with its ErrorInfo decoded.
 */
export function expectScenarioObserved(stdout: string, programKey: string): void {
  const observed = JSON.parse(stdout) as Record<string, unknown>;
  expect(observed).toMatchObject({
    program_key: programKey,
    valid: true,
    reward_amount_minor: 2500,
    amount_earned_minor: 2500,
    payout_status: "PAYOUT_STATUS_PENDING",
    error: { code: "FAILED_PRECONDITION", info: { reason: "SELF_REFERRAL", domain: "referral.v1" } },
  });
  expect(observed.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{10}$/);
}
