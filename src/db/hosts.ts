import pg from "pg";

/**
 * Which server a session may land on, as libpq's `target_session_attrs`:
 * `read-write` and `primary` need a server that takes writes (a primary, not
 * one in recovery), `read-only` and `standby` one that does not,
 * `prefer-standby` a standby if any answers, else any server; `any` the first
 * server that answers.
 */
type SessionAttrs = "any" | "read-write" | "read-only" | "primary" | "standby" | "prefer-standby";

const SESSION_ATTRS = new Set<string>(["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]);

/** What one server says of itself, asked on a new session. */
type ServerRole = { inRecovery: boolean; readOnly: boolean };

/** The question a new session asks when the target needs the answer. */
export const SERVER_ROLE_SQL = "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') = 'on' AS read_only";

/** The answer to SERVER_ROLE_SQL. */
export function serverRole(row: unknown): ServerRole {
  const { in_recovery, read_only } = (row ?? {}) as { in_recovery?: unknown; read_only?: unknown };
  if (typeof in_recovery !== "boolean" || typeof read_only !== "boolean") throw new Error("the server did not say its role");
  return { inRecovery: in_recovery, readOnly: read_only };
}

/**
 * A database URL, libpq style: one URI per host, same user, database and
 * parameters (minus `target_session_attrs`, which node-postgres does not know),
 * and the session attributes every new session must satisfy.
 */
export type DatabaseHosts = { uris: readonly [string, ...string[]]; sessionAttrs: SessionAttrs };

export class DatabaseUrlError extends Error {}

const URI = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/;

/**
 * Splits `postgres://u@h1:p1,h2:p2/db?target_session_attrs=read-write` into
 * one URI per host. A URL with one host and no `target_session_attrs` comes
 * back as it is. `sslmode=prefer` (what `pg_autoctl show uri` hands out) is
 * dropped with its peer `allow`: node-postgres cannot fall back from TLS, so
 * such a URL connects without it, as libpq does with a server that has no TLS.
 */
export function parseDatabaseUrl(url: string): DatabaseHosts {
  const match = URI.exec(url);
  if (match === null) throw new DatabaseUrlError("not a postgres:// URI");
  const [, scheme = "", userinfo = "", hostList = "", path = "", query = "", fragment = ""] = match;
  const params = query === "" ? [] : query.slice(1).split("&");
  const attrsParam = params.find((param) => param.startsWith("target_session_attrs="));
  const sessionAttrs = attrsParam === undefined ? "any" : decodeURIComponent(attrsParam.slice("target_session_attrs=".length));
  if (!SESSION_ATTRS.has(sessionAttrs)) throw new DatabaseUrlError(`target_session_attrs must be one of ${[...SESSION_ATTRS].join(", ")}`);
  const [first = "", ...more] = hostList.split(",");
  const hosts = [first, ...more] as const;
  if (more.length === 0 && attrsParam === undefined) return { uris: [url], sessionAttrs: "any" };
  if (hosts.some((host) => host === "")) throw new DatabaseUrlError("a host in the list is empty");
  const kept = params.filter((param) => param !== attrsParam && !/^sslmode=(prefer|allow)$/.test(param));
  const rest = `${path}${kept.length === 0 ? "" : `?${kept.join("&")}`}${fragment}`;
  const uri = (host: string) => `${scheme}${userinfo}${host}${rest}`;
  return { uris: [uri(first), ...more.map(uri)], sessionAttrs: sessionAttrs as SessionAttrs };
}

/** `hosts` with `change` made to each host's URI. */
export function mapUris(hosts: DatabaseHosts, change: (uri: string) => string): DatabaseHosts {
  const [first, ...more] = hosts.uris;
  return { ...hosts, uris: [change(first), ...more.map(change)] };
}

/** Whether a server in `role` fits `attrs`; prefer-standby's fallback pass takes any. */
function fits(attrs: SessionAttrs, role: ServerRole, fallback: boolean): boolean {
  switch (attrs) {
    case "any":
      return true;
    case "read-write":
      return !role.readOnly;
    case "read-only":
      return role.readOnly;
    case "primary":
      return !role.inRecovery;
    case "standby":
      return role.inRecovery;
    case "prefer-standby":
      return fallback || role.inRecovery;
  }
}

/** How to open, question and close a session of some driver on one host. */
export type SessionOpener<S> = {
  open(uri: string): Promise<S>;
  role(session: S): Promise<ServerRole>;
  close(session: S): Promise<void>;
};

/**
 * Opens sessions the way libpq does with several hosts: tries them in order
 * until one answers and fits the target, and fails with the last error when
 * none does. It starts from the host that last fitted, so after a failover
 * only the first new session pays for trying the old primary. With one host
 * and no target, the session opens exactly as it would without this.
 */
export class HostSelector {
  readonly #hosts: DatabaseHosts;
  #start = 0;

  constructor(hosts: DatabaseHosts) {
    this.#hosts = hosts;
  }

  /** Whether there is a choice to make: several hosts, or a target to check. */
  get chooses(): boolean {
    return this.#hosts.uris.length > 1 || this.#hosts.sessionAttrs !== "any";
  }

  async open<S>(opener: SessionOpener<S>): Promise<S> {
    const { uris, sessionAttrs } = this.#hosts;
    if (!this.chooses) return opener.open(uris[0]);
    let lastError: unknown = new Error("no host fits");
    const passes = sessionAttrs === "prefer-standby" ? [false, true] : [false];
    for (const fallback of passes) {
      // From the host that fitted last, then the others in order.
      const order = uris.map((uri, index) => ({ uri, index }));
      for (const { uri, index } of [...order.slice(this.#start), ...order.slice(0, this.#start)]) {
        let session: S;
        try {
          session = await opener.open(uri);
        } catch (error) {
          lastError = error;
          continue;
        }
        try {
          if (sessionAttrs === "any" || fits(sessionAttrs, await opener.role(session), fallback)) {
            this.#start = index;
            return session;
          }
          lastError = new ReadOnlyServerError(`${hostOf(uri)} is not ${sessionAttrs}`);
        } catch (error) {
          lastError = error;
        }
        await opener.close(session).catch(() => undefined);
      }
    }
    throw lastError;
  }
}

/** A host answered but does not fit the target: SQLSTATE 25006, like a write refused on it. */
class ReadOnlyServerError extends Error {
  readonly code = "25006";
}

/** `host:port` of a single-host URI, for messages (never the credentials). */
function hostOf(uri: string): string {
  return URI.exec(uri)?.[3] ?? "a host";
}

/** A connected node-postgres client on the host that fits `url`'s target (migrations, LISTEN). */
export function connectClient(url: string): Promise<pg.Client> {
  return new HostSelector(parseDatabaseUrl(url)).open<pg.Client>({
    open: async (uri) => {
      const client = new pg.Client({ connectionString: uri });
      try {
        await client.connect();
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      }
      return client;
    },
    role: async (client) => {
      const { rows } = await client.query(SERVER_ROLE_SQL);
      return serverRole(rows[0]);
    },
    close: (client) => client.end(),
  });
}
