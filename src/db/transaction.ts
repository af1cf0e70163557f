import type { DatabasePool, DatabaseTransactionConnection } from "slonik";
import { isConnectionFailure } from "../error-mapping.ts";

/**
 * `pool.transaction`, except that an error which leaves the connection sound
 * (a refusal the handler throws, a constraint violation) rolls back and
 * returns the connection to the pool: Slonik destroys the connection of any
 * transaction that throws, which under many refusals (a race for a code's last
 * uses) would reconnect to PostgreSQL once per refused call. A connection
 * failure still destroys it.
 */
export async function transaction<T>(db: DatabasePool, handler: (tx: DatabaseTransactionConnection) => Promise<T>): Promise<T> {
  const outcome = await db.connect(async (connection) => {
    try {
      return { value: await connection.transaction(handler) };
    } catch (error) {
      if (isConnectionFailure(error)) throw error;
      return { error };
    }
  });
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}
