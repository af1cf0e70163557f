import type { Clock } from "../../src/platform/clock.ts";

/** A clock tests move by hand instead of sleeping. */
export class TestClock implements Clock {
  #now: number;

  constructor(start = new Date()) {
    this.#now = start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  static readonly DAY = 24 * 3600 * 1000;
}
