import fc from "fast-check";
import { afterAll, beforeAll, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";
import {
  advanceCmdGen,
  checkState,
  codeCmdGen,
  createPayoutsCmdGen,
  payoutAccountCmdGen,
  settlePayoutCmdGen,
  ModelCommand,
  payoutCmdGen,
  programCmdGen,
  reverseCmdGen,
  outcomeReport,
  resetOutcomes,
  runCommand,
  SequenceContext,
  trackCmdGen,
  updateCodeCmdGen,
  updateProgramCmdGen,
  validateCmdGen,
} from "./commands.ts";
import { ReferenceModel } from "./reference-model.ts";
import type { Cmd } from "./commands.ts";
import { replayHint, runSettings } from "./settings.ts";
import { ModelClock } from "./system.ts";

/**
 * Issue 15, serial: random sequences of commands against one real server (a
 * TestClock the AdvanceClock command moves) and PostgreSQL, each answer
 * compared with the reference model, and the whole state (programs, codes'
 * uses, every user's earnings) after every command. Each sequence has its
 * own program keys, users and vanity codes, so sequences share the server.
 */
const clock = new ModelClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const commandGen = fc.oneof(
  { arbitrary: programCmdGen, weight: 2 },
  { arbitrary: updateProgramCmdGen, weight: 2 },
  { arbitrary: codeCmdGen, weight: 4 },
  { arbitrary: updateCodeCmdGen, weight: 2 },
  { arbitrary: validateCmdGen, weight: 3 },
  { arbitrary: trackCmdGen({ validateOnly: true, occurred: true }), weight: 12 },
  { arbitrary: reverseCmdGen, weight: 3 },
  { arbitrary: payoutCmdGen, weight: 3 },
  { arbitrary: advanceCmdGen, weight: 2 },
  { arbitrary: payoutAccountCmdGen, weight: 1 },
  { arbitrary: createPayoutsCmdGen, weight: 6 },
  { arbitrary: settlePayoutCmdGen, weight: 4 },
);

/** Rewards moving through payouts: conversions, runs, settlements and refunds, with accounts for most users. */
const payoutCommandGen = fc.oneof(
  { arbitrary: trackCmdGen({ validateOnly: false, occurred: false }), weight: 12 },
  { arbitrary: createPayoutsCmdGen, weight: 6 },
  { arbitrary: settlePayoutCmdGen, weight: 6 },
  { arbitrary: reverseCmdGen, weight: 3 },
  { arbitrary: payoutCmdGen, weight: 2 },
  { arbitrary: advanceCmdGen, weight: 2 },
  { arbitrary: updateProgramCmdGen, weight: 1 },
  { arbitrary: payoutAccountCmdGen, weight: 1 },
);

/** Sequences of `commands` after a setup of programs, codes and payout accounts, each compared with the model. */
async function serialRuns(label: string, commands: fc.Arbitrary<Cmd>, numRuns: number, maxAccounts: number): Promise<void> {
  const settings = runSettings(1000, 30);
  const started = Date.now();
  let sequences = 0;
  resetOutcomes();
  await fc.assert(
    fc.asyncProperty(
      fc.array(programCmdGen, { minLength: 1, maxLength: 2 }),
      fc.array(codeCmdGen, { minLength: 1, maxLength: 3 }),
      // Payout accounts for some users: CreatePayouts pays only referrers who have one.
      fc.array(payoutAccountCmdGen, { maxLength: maxAccounts }),
      fc.commands([commands.map((cmd) => new ModelCommand(cmd))], { maxCommands: settings.maxCommands, size: "max" }),
      async (programs, codes, accounts, sequence) => {
        sequences += 1;
        clock.reset();
        const model = new ReferenceModel();
        const ctx = new SequenceContext(t.grpc, clock);
        for (const cmd of [...programs, ...codes, ...accounts]) await runCommand(cmd, model, ctx);
        await fc.asyncModelRun(() => ({ model, real: ctx }), sequence);
        await checkState(model, ctx);
      },
    ),
    { numRuns, seed: settings.seed, path: settings.path },
  );
  console.log(`[model:${label}] ${sequences} sequences in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`[model:${label}] outcomes: ${outcomeReport()}`);
}

it("the service answers every command as the reference model does, and ends in its state", async () => {
  const settings = runSettings(1000, 30);
  console.log(replayHint("serial", settings));
  await serialRuns("serial", commandGen, settings.numRuns, 3);
});

it("payouts: every run, settlement, reward and earning among conversions and refunds is as the model says", async () => {
  const settings = runSettings(1000, 30);
  console.log(replayHint("serial", settings));
  await serialRuns("payouts", payoutCommandGen, Math.ceil(settings.numRuns / 4), 6);
});
