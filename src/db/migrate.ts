import { fileURLToPath } from "node:url";
import { migrate } from "postgres-migrations";
import { connectClient } from "./hosts.ts";

/** The plain, numbered migration files. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../../sql", import.meta.url));

/**
 * Applies the pending migrations in `sql/`, each in its own transaction.
 * postgres-migrations records a hash of every applied file (an edited
 * migration fails the start) and holds a PostgreSQL advisory lock while it
 * works, so replicas starting together apply each migration exactly once.
 */
export async function runMigrations(connectionString: string): Promise<string[]> {
  // On the host that fits the URL's target (the primary, given several hosts).
  const client = await connectClient(connectionString);
  try {
    const applied = await migrate({ client }, MIGRATIONS_DIR);
    return applied.map((migration) => migration.name);
  } finally {
    await client.end();
  }
}
