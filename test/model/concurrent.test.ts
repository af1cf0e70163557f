import fc from "fast-check";
import { afterAll, beforeAll, inject, it } from "vitest";
import { type ServerProcess, spawnServer } from "../support/server-process.ts";
import {
  type Cmd,
  canRun,
  codeCmdGen,
  createPayoutsCmdGen,
  payoutAccountCmdGen,
  settlePayoutCmdGen,
  compareState,
  countOutcome,
  mismatch,
  observeState,
  outcomeReport,
  payoutCmdGen,
  predict,
  programCmdGen,
  resolve,
  reverseCmdGen,
  runCommand,
  SequenceContext,
  trackCmdGen,
  updateCodeCmdGen,
  updateProgramCmdGen,
  validateCmdGen,
} from "./commands.ts";
import { ReferenceModel } from "./reference-model.ts";
import { replayHint, runSettings } from "./settings.ts";
import { type Actual, call, type Concrete, show } from "./system.ts";

/**
 * Issue 15, concurrent: after a serial setup (programs, codes), batches of up
 * to five commands run at once, spread over two server processes on one
 * database. The answers and the state after each batch must be those of SOME
 * serial order of the batch: every order is tried in the model. The processes
 * use the system clock, so there is no AdvanceClock here, and conversions
 * carry an explicit occurred_at (the batch's start) so the model knows it.
 */
let servers: ServerProcess[] = [];
beforeAll(async () => {
  const databaseUrl = inject("databaseUrl");
  servers = await Promise.all([spawnServer(databaseUrl), spawnServer(databaseUrl)]);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** Conversions racing reversals, payouts and rule changes (UpdateCode, UpdateProgram). */
const batchCommandGen: fc.Arbitrary<Cmd> = fc.oneof(
  { arbitrary: trackCmdGen({ validateOnly: true, occurred: false }), weight: 12 },
  { arbitrary: validateCmdGen, weight: 2 },
  { arbitrary: reverseCmdGen, weight: 3 },
  { arbitrary: payoutCmdGen, weight: 2 },
  { arbitrary: updateCodeCmdGen, weight: 2 },
  { arbitrary: updateProgramCmdGen, weight: 2 },
  { arbitrary: payoutAccountCmdGen, weight: 1 },
  { arbitrary: createPayoutsCmdGen, weight: 2 },
  { arbitrary: settlePayoutCmdGen, weight: 2 },
);

const MAX_BATCH = 5;

function* permutations(n: number): Generator<number[]> {
  const items = Array.from({ length: n }, (_, i) => i);
  function* go(prefix: number[], rest: number[]): Generator<number[]> {
    if (rest.length === 0) yield prefix;
    for (let i = 0; i < rest.length; i++) yield* go([...prefix, rest[i]!], [...rest.slice(0, i), ...rest.slice(i + 1)]);
  }
  yield* go([], items);
}

/** Gave up on a race (ABORTED / CONFLICT): documented as "retry"; it must have changed nothing. */
const gaveUp = (a: Actual) => !a.ok && a.error.code === "ABORTED";
let conflicts = 0;
let batches = 0;

async function runBatch(cmds: Cmd[], model: ReferenceModel, ctx: SequenceContext): Promise<ReferenceModel> {
  const now = Date.now();
  const runnable = cmds.filter((c) => canRun(c, model, false));
  const concrete: Concrete[] = runnable.map((c) => resolve(c, model, ctx, now));
  if (concrete.length === 0) return model;
  const actual = await Promise.all(concrete.map((c, i) => call(servers[i % servers.length]!.grpc, c)));
  batches += 1;
  concrete.forEach((c, i) => countOutcome(c, actual[i]!));
  const observed = await observeState(model, ctx, servers[0]!.grpc);
  const at = Date.now();
  const report: string[] = [];
  for (const order of permutations(concrete.length)) {
    const candidate = model.clone();
    let why: string | null = null;
    for (const i of order) {
      if (gaveUp(actual[i]!)) continue;
      const expected = predict(candidate, concrete[i]!, at);
      why = mismatch(expected, actual[i]!);
      if (why !== null) {
        why = `#${i} ${concrete[i]!.rpc}: ${why}`;
        break;
      }
      const a = actual[i]!;
      if (expected.ok && a.ok) expected.apply(a.observed as never);
    }
    why ??= compareState(candidate, ctx, observed, at);
    if (why === null) {
      conflicts += actual.filter(gaveUp).length;
      return candidate;
    }
    if (report.length < 6) report.push(`order ${order.join(",")}: ${why}`);
  }
  throw new Error(
    `no serial order of the batch explains what the service answered and the state it ended in\n  batch (sequence ${ctx.tag}):\n${concrete
      .map((c, i) => `    #${i} ${show(c)} -> ${actual[i]!.ok ? `ok ${show((actual[i] as { value: unknown }).value)}` : show((actual[i] as { error: unknown }).error)}`)
      .join("\n")}\n  tried:\n    ${report.join("\n    ")}\n  earlier calls:\n    ${ctx.log.slice(-30).join("\n    ")}`,
  );
}

it("every batch of concurrent commands over two processes ends as some serial order of it would", async () => {
  const env = process.env.MODEL_CONCURRENT_RUNS;
  const settings = runSettings(env !== undefined && env !== "" ? Number(env) : 150, 0);
  if (env !== undefined && env !== "") settings.numRuns = Number(env);
  console.log(replayHint("concurrent", settings).replace("MODEL_SEED", "MODEL_CONCURRENT_RUNS=… MODEL_SEED"));
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(
      fc.array(programCmdGen, { minLength: 1, maxLength: 2 }),
      fc.array(codeCmdGen, { minLength: 2, maxLength: 4 }),
      fc.array(fc.array(batchCommandGen, { minLength: 2, maxLength: MAX_BATCH }), { minLength: 1, maxLength: 6, size: "max" }),
      async (programs, codes, batchList) => {
        let model = new ReferenceModel();
        const ctx = new SequenceContext(servers[0]!.grpc, null);
        for (const cmd of [...programs, ...codes]) await runCommand(cmd, model, ctx);
        for (const batch of batchList) model = await runBatch(batch, model, ctx);
      },
    ),
    { numRuns: settings.numRuns, seed: settings.seed, path: settings.path },
  );
  console.log(`[model:concurrent] ${batches} batches in ${((Date.now() - started) / 1000).toFixed(1)} s, ${conflicts} calls gave up with ABORTED`);
  console.log(`[model:concurrent] outcomes: ${outcomeReport()}`);
});
