/** Where the service reads the time, so tests can move it instead of sleeping. */
export type Clock = { now(): Date };

export const systemClock: Clock = { now: () => new Date() };

/** A day in milliseconds: hold_days, conversion windows and MAX_BACKDATE_DAYS count in them. */
export const DAY_MS = 24 * 3600 * 1000;
