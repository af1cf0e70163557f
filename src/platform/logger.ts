import { writeSync } from "node:fs";

/** Structured JSON logs, one object per line on stdout. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const levels: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Logger = {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
};

/**
 * Lines for stdout, written once per turn of the event loop rather than one
 * write(2) per line (one per call under load); whatever is pending is written
 * synchronously when the process exits.
 */
function bufferedStdout(): (line: string) => void {
  let pending: string[] = [];
  const take = () => {
    const text = pending.join("");
    pending = [];
    return text;
  };
  process.once("exit", () => {
    if (pending.length === 0) return;
    try {
      writeSync(process.stdout.fd, take());
    } catch {
      // stdout is gone or full: nothing more can be said.
    }
  });
  return (line) => {
    if (pending.push(line) === 1) setImmediate(() => process.stdout.write(take()));
  };
}

export function createLogger(minimum: LogLevel = "info", write: (line: string) => void = bufferedStdout()): Logger {
  const emit = (level: LogLevel) => (message: string, fields: Record<string, unknown> = {}) => {
    if (levels[level] < levels[minimum]) return;
    const entry = { time: new Date().toISOString(), level, message, ...fields };
    // A replacer slows every line down; only lines carrying a bigint or an object need one.
    const plain = Object.values(fields).every((value) => typeof value !== "bigint" && (typeof value !== "object" || value === null));
    write(`${plain ? JSON.stringify(entry) : JSON.stringify(entry, jsonSafe)}\n`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A logger that drops everything (tests that do not look at logs). */
export const silentLogger: Logger = createLogger("error", () => {});

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
