import type { DatabasePool, DatabasePoolConnection, DatabaseTransactionConnection } from "slonik";
import { isConnectionFailure } from "./errors.ts";

/**
 * Runs `work` on a pooled connection. An error that leaves the connection
 * sound (a refusal `work` throws, a constraint violation) is rethrown after the
 * connection goes back to the pool: Slonik destroys the connection of any
 * pooled query or transaction that throws, which under many refusals (a race
 * for a code's last uses, for a user's last code slot) would reconnect to
 * PostgreSQL once per refused call. A connection failure still destroys it.
 */
export async function withConnection<T>(db: DatabasePool, work: (connection: DatabasePoolConnection) => Promise<T>): Promise<T> {
  const outcome = await db.connect(async (connection) => {
    try {
      return { value: await work(connection) };
    } catch (error) {
      if (isConnectionFailure(error)) throw error;
      return { error };
    }
  });
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}

/** `pool.transaction` on the terms of `withConnection`. */
export function transaction<T>(db: DatabasePool, handler: (tx: DatabaseTransactionConnection) => Promise<T>): Promise<T> {
  return withConnection(db, (connection) => connection.transaction(handler));
}
