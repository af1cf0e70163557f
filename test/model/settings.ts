/**
 * Run settings of the model-based test, from the environment:
 * MODEL_RUNS (sequences), MODEL_SEED and MODEL_PATH (replay a failure that
 * fast-check printed), MODEL_MAX_COMMANDS (longest sequence).
 */
export function runSettings(defaultRuns: number, defaultMaxCommands: number) {
  const env = process.env;
  const seed = env.MODEL_SEED !== undefined && env.MODEL_SEED !== "" ? Number(env.MODEL_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  const path = env.MODEL_PATH !== undefined && env.MODEL_PATH !== "" ? env.MODEL_PATH : undefined;
  const numRuns = env.MODEL_RUNS !== undefined && env.MODEL_RUNS !== "" ? Number(env.MODEL_RUNS) : defaultRuns;
  const maxCommands = env.MODEL_MAX_COMMANDS !== undefined && env.MODEL_MAX_COMMANDS !== "" ? Number(env.MODEL_MAX_COMMANDS) : defaultMaxCommands;
  return { seed, path, numRuns, maxCommands };
}

/** One line that replays a run: printed before it starts, so even a run killed midway can be replayed. */
export function replayHint(name: string, settings: { seed: number; path: string | undefined; numRuns: number }): string {
  return `[model:${name}] numRuns=${settings.numRuns} seed=${settings.seed}${settings.path === undefined ? "" : ` path=${settings.path}`} (replay: MODEL_SEED=${settings.seed}${settings.path === undefined ? "" : ` MODEL_PATH=${settings.path}`} npm run test:model)`;
}
