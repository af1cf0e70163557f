import type { CommonQueryMethods } from "slonik";

export type Captured = { sql: string; values: readonly unknown[] };

/**
 * A stand-in connection that records the statements it is given instead of
 * running them: the bench turns them into pgbench scripts, test/plans.test.ts
 * explains their plans.
 */
export function captureStatements(): { db: CommonQueryMethods; taken: Captured[] } {
  const taken: Captured[] = [];
  const record = async (query: Captured) => {
    taken.push(query);
    return null;
  };
  const many = async (query: Captured) => {
    taken.push(query);
    return [];
  };
  return { db: { maybeOne: record, one: record, any: many, query: record } as unknown as CommonQueryMethods, taken };
}
