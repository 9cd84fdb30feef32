// A PostgreSQL server a test file starts for itself: initdb into a temporary
// directory, pg_ctl on a free loopback port, trust authentication on
// loopback only. Fault tests stop, restart or kill it; the shared Postgres
// (DATABASE_URL) is never touched. Running as root, the server runs as the
// `postgres` user (Postgres refuses root); otherwise as the current user.
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./redis.js";

const run = promisify(execFile);

/** The newest installed PostgreSQL's bin directory (PG_BIN overrides). */
function pgBin(): string {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv) return fromEnv;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)) : [];
  if (versions.length === 0) throw new Error("no PostgreSQL server binaries found under /usr/lib/postgresql (set PG_BIN)");
  return join(root, versions.sort((a, b) => Number(b) - Number(a))[0] as string, "bin");
}

export interface PostgresServer {
  readonly port: number;
  /** postgres://postgres@127.0.0.1:PORT/postgres (a superuser, trust on loopback). */
  readonly url: string;
  /** A connection string to another database on this server. */
  urlFor(database: string): string;
  /** pg_ctl stop -m fast: backends are terminated (57P01), new connections refused. */
  stop(): Promise<void>;
  /** pg_ctl start on the same port and data directory. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** SIGKILL to the postmaster: no shutdown at all (crash recovery on the next start). */
  kill(): Promise<void>;
  readonly running: boolean;
  /** Stops the server and deletes its directory. */
  destroy(): Promise<void>;
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = pgBin();
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "authz-pg-"));
  const data = join(dir, "data");
  if (asRoot) chownSync(dir, ...pgIds());
  const port = await freePort();
  const exec = (tool: string, args: string[], timeout = 60_000) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, tool), ...args], { timeout }) : run(join(bin, tool), args, { timeout });
  let running = false;
  const pgCtl = (args: string[]) => exec("pg_ctl", ["-D", data, "-w", "-t", "60", ...args]);
  const start = async () => {
    await pgCtl(["-l", join(dir, "server.log"), "-o", `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c max_connections=60`, "start"]);
    running = true;
  };
  try {
    await exec("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"]);
    await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const server: PostgresServer = {
    port,
    url,
    urlFor: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    get running() {
      return running;
    },
    async stop() {
      if (!running) return;
      await pgCtl(["-m", "fast", "stop"]);
      running = false;
    },
    start,
    async restart() {
      await server.stop();
      await start();
    },
    async kill() {
      const pidFile = join(data, "postmaster.pid");
      if (!running || !existsSync(pidFile)) return;
      const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
      process.kill(pid, "SIGKILL");
      // The backends notice the postmaster's death and exit; wait until none answers.
      const end = Date.now() + 20_000;
      while (
        Date.now() < end &&
        (await exec("pg_ctl", ["-D", data, "status"]).then(
          () => true,
          () => false,
        ))
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      running = false;
    },
    async destroy() {
      await server.stop().catch(() => server.kill());
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** The uid and gid of the `postgres` user. */
function pgIds(): [number, number] {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("there is no postgres user to run the server as (running as root)");
  const [, , uid, gid] = line.split(":");
  return [Number(uid), Number(gid)];
}
