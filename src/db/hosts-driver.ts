import { createPgDriverFactory } from "@slonik/pg-driver";
import type { Driver, DriverClient, DriverFactory } from "slonik";
import { type HostSelector, SERVER_ROLE_SQL, serverRole } from "./hosts.ts";

/**
 * Slonik's node-postgres driver over several hosts: each new pooled
 * connection is opened on the host that fits the URL's target (the primary,
 * for `target_session_attrs=read-write`), found as libpq finds it. A
 * connection lives on one host for its life, so a query's cancel
 * (cancel-at-deadline.ts, which reads the client's own host) reaches the
 * server running it. When the primary goes, its connections fail and are
 * destroyed (errors.ts counts 25006, a write refused by a demoted server, as
 * a connection failure); the next ones open on whichever host is primary now.
 *
 * The per-host drivers are made on first use: making one connects to that
 * host (Slonik reads type OIDs), which a host that is down would fail.
 */
export function hostsDriverFactory(selector: HostSelector): DriverFactory {
  const pgDriverFactory = createPgDriverFactory();
  return async ({ driverConfiguration }) => {
    const drivers = new Map<string, Promise<Driver>>();
    const driverFor = (uri: string): Promise<Driver> => {
      let driver = drivers.get(uri);
      if (driver === undefined) {
        driver = pgDriverFactory({ driverConfiguration: { ...driverConfiguration, connectionUri: uri } });
        drivers.set(uri, driver);
        driver.catch(() => drivers.delete(uri));
      }
      return driver;
    };
    return {
      createClient: () =>
        selector.open<DriverClient>({
          open: async (uri) => (await driverFor(uri)).createClient(),
          role: async (client) => {
            client.acquire();
            try {
              const { rows } = await client.query(SERVER_ROLE_SQL);
              return serverRole(rows[0]);
            } finally {
              await client.release();
            }
          },
          close: (client) => client.destroy(),
        }),
    };
  };
}
