import { connect } from "node:net";
import pg from "pg";

/** The protocol's CancelRequest code (1234 << 16 | 5678). */
const CANCEL_REQUEST_CODE = 80877102;
/** How long a cancel may take to be delivered before the query is let go anyway. */
const CANCEL_WAIT_MS = 1000;

/** What a connected node-postgres client knows about its session (BackendKeyData). */
type SessionKey = { host: string; port: number; processID: number | null; secretKey: number | null };

/**
 * Sends the protocol's CancelRequest for `client`'s session on a connection
 * of its own, and resolves once the server has closed that connection
 * (PostgreSQL signals the backend before it closes; PgBouncer forwards the
 * request to the server connection running the client's query), or after
 * CANCEL_WAIT_MS if the server does not answer (it may be frozen or gone).
 */
function sendCancelRequest(client: SessionKey): Promise<void> {
  const { processID, secretKey } = client;
  if (processID === null || secretKey === null) return Promise.resolve();
  return new Promise((resolve) => {
    const socket = client.host.startsWith("/") ? connect(`${client.host}/.s.PGSQL.${client.port}`) : connect(client.port, client.host);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, CANCEL_WAIT_MS);
    socket.once("connect", () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      packet.writeInt32BE(processID, 8);
      packet.writeInt32BE(secretKey, 12);
      // Not end(): PgBouncer drops a cancel whose sender hangs up before it
      // has been forwarded. The server closes the connection when done.
      socket.write(packet);
    });
    socket.once("close", done);
    socket.on("error", done);
  });
}

let installedWith: (() => number | undefined) | undefined;

/**
 * Makes PostgreSQL end the query of a call whose deadline passed: every
 * node-postgres query started while `deadline()` names one gets a timer, and
 * if the query still runs when the deadline comes, a CancelRequest is sent
 * for its session. The query's promise settles only once the cancel was
 * delivered, so the connection cannot go back to the pool (and on to another
 * call) while a cancel meant for this one is still on its way.
 *
 * This costs no round trip on the common path (nothing is sent unless a
 * deadline passes) and holds behind PgBouncer in transaction pooling, which
 * forwards a cancel to the server connection running that client's query;
 * a session-level statement_timeout would instead stay on whichever server
 * connection it landed on and cut other clients' queries.
 *
 * node-postgres' Client has no hook for this and Slonik does not hand its
 * clients out, so `Client.prototype.query` is wrapped, once per process.
 * Queries outside any deadline (migrations, health probes, shared reads) are
 * left as they are.
 */
export function cancelQueriesAtDeadline(deadline: () => number | undefined): void {
  if (installedWith === deadline) return;
  if (installedWith !== undefined) throw new Error("queries are already cancelled at another deadline");
  installedWith = deadline;
  const query = pg.Client.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const result = query.apply(this, args);
    const at = deadline();
    const left = at === undefined ? 0 : at - Date.now();
    // Statements issued after the deadline (a ROLLBACK) run as they are.
    if (!(result instanceof Promise) || left <= 0) return result;
    let cancelled: Promise<void> | undefined;
    const timer = setTimeout(() => {
      cancelled = sendCancelRequest(this as unknown as SessionKey);
    }, left);
    // The common case (the query ended before its deadline) settles at once;
    // only a query whose cancel went out waits for its delivery.
    const settle = <T>(finish: () => T) => {
      clearTimeout(timer);
      return cancelled === undefined ? finish() : cancelled.then(finish);
    };
    return result.then(
      (value: unknown) => settle(() => value),
      (error: unknown) =>
        settle(() => {
          throw error;
        }),
    );
  } as typeof pg.Client.prototype.query;
}
