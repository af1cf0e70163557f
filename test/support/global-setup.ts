import type { TestProject } from "vitest/node";
import { runMigrations } from "../../src/db/migrate.ts";
import { createDatabase, dropDatabase, startTestCluster } from "./database.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Cluster maintenance URI, for tests that need databases of their own. */
    adminUrl: string;
    /** A database with every migration applied, shared by the suite. */
    databaseUrl: string;
  }
}

/** Once per run: a PostgreSQL, a fresh database, migrations applied. */
export default async function setup(project: TestProject) {
  const cluster = await startTestCluster();
  const databaseUrl = await createDatabase(cluster.adminUrl);
  await runMigrations(databaseUrl);
  project.provide("adminUrl", cluster.adminUrl);
  project.provide("databaseUrl", databaseUrl);
  return async () => {
    await dropDatabase(cluster.adminUrl, databaseUrl);
    await cluster.stop();
  };
}
