import { outsideCallDeadline } from "./call-deadline.ts";

export type PeriodicJob = {
  /** Stops the timer and waits for a run in flight. */
  stop(): Promise<void>;
  /** Whether stop() was called (a long run checks it between steps). */
  readonly stopped: boolean;
};

/**
 * Runs `work` every `intervalMs`, one run at a time (a tick during a run is
 * skipped), outside any call's deadline, without keeping the process alive.
 * `work` handles its own errors.
 */
export function startPeriodic(intervalMs: number, work: () => Promise<void>): PeriodicJob {
  let running: Promise<void> | undefined;
  let stopped = false;
  const timer = setInterval(() => {
    running ??= outsideCallDeadline(work).finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return {
    get stopped() {
      return stopped;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
