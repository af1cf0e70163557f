import fc from "fast-check";
import { afterAll, beforeAll, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";
import {
  advanceCmdGen,
  checkState,
  codeCmdGen,
  ModelCommand,
  payoutCmdGen,
  programCmdGen,
  reverseCmdGen,
  outcomeReport,
  runCommand,
  SequenceContext,
  trackCmdGen,
  updateCodeCmdGen,
  updateProgramCmdGen,
  validateCmdGen,
} from "./commands.ts";
import { ReferenceModel } from "./reference-model.ts";
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
);

it("the service answers every command as the reference model does, and ends in its state", async () => {
  const settings = runSettings(1000, 30);
  console.log(replayHint("serial", settings));
  const started = Date.now();
  let sequences = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(programCmdGen, { minLength: 1, maxLength: 2 }),
      fc.array(codeCmdGen, { minLength: 1, maxLength: 3 }),
      fc.commands([commandGen.map((cmd) => new ModelCommand(cmd))], { maxCommands: settings.maxCommands, size: "max" }),
      async (programs, codes, commands) => {
        sequences += 1;
        clock.reset();
        const model = new ReferenceModel();
        const ctx = new SequenceContext(t.grpc, clock);
        for (const cmd of [...programs, ...codes]) await runCommand(cmd, model, ctx);
        await fc.asyncModelRun(() => ({ model, real: ctx }), commands);
        await checkState(model, ctx);
      },
    ),
    { numRuns: settings.numRuns, seed: settings.seed, path: settings.path },
  );
  console.log(`[model:serial] ${sequences} sequences in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`[model:serial] outcomes: ${outcomeReport()}`);
});
