// Redis servers a test file starts for itself, on free loopback ports: a
// standalone server it may kill and restart (failure tests), and a local
// 3-master Redis Cluster. Only the processes started here are ever stopped,
// by their own pid; the shared Redis (REDIS_URL) is never touched.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const REDIS_SERVER = process.env["REDIS_SERVER_BIN"] ?? "redis-server";
const REDIS_CLI = process.env["REDIS_CLI_BIN"] ?? "redis-cli";

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** A free loopback port; with `bus`, port + 10000 (the cluster bus) is free too. */
export async function freePort(bus = false): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    if ((await portFree(port)) && (!bus || (await portFree(port + 10000)))) return port;
  }
  throw new Error("no free port found");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run(REDIS_CLI, ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 10_000 });
  return stdout;
}

async function waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what} not reached within ${ms} ms`);
}

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  readonly pid: number | undefined;
  /** SIGKILL: the server is gone, connections are reset. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: the server hangs with its connections open. */
  pause(): void;
  resume(): void;
  /** Starts it again on the same port (after kill). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** One redis-server on a free (or given) loopback port, no persistence. */
export async function startRedisServer(opts: { port?: number; cluster?: boolean; dir?: string } = {}): Promise<RedisProcess> {
  const port = opts.port ?? (await freePort(opts.cluster));
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "authz-redis-"));
  const ownDir = opts.dir === undefined;
  let child: ChildProcess | undefined;
  const start = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir];
    if (opts.cluster) args.push("--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--cluster-node-timeout", "2000");
    const c = spawn(REDIS_SERVER, args, { stdio: "ignore" });
    child = c;
    c.on("error", () => {});
    await waitFor(async () => (await cli(port, "ping")).trim() === "PONG", 10_000, `redis-server on ${port}`);
  };
  const exited = (c: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once("exit", () => resolve());
    });
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    async kill() {
      const c = child;
      if (!c) return;
      c.kill("SIGCONT");
      c.kill("SIGKILL");
      await exited(c);
      child = undefined;
    },
    pause() {
      child?.kill("SIGSTOP");
    },
    resume() {
      child?.kill("SIGCONT");
    },
    async restart() {
      if (child) throw new Error("still running");
      await start();
    },
    async stop() {
      const c = child;
      child = undefined;
      if (c) {
        c.kill("SIGCONT");
        c.kill("SIGKILL");
        await exited(c);
      }
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  readonly ports: number[];
  /** A seed node's URL (set AUTHZ_REDIS_CLUSTER=true with it). */
  readonly url: string;
  stop(): Promise<void>;
}

/** A local 3-master Redis Cluster on free loopback ports, ready (cluster_state:ok on every node). */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), "authz-redis-cluster-"));
  const nodes: RedisProcess[] = [];
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedisServer({ cluster: true, dir }));
    await run(REDIS_CLI, ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"], { timeout: 30_000 });
    for (const n of nodes) {
      await waitFor(async () => (await cli(n.port, "cluster", "info")).includes("cluster_state:ok"), 20_000, `cluster_state:ok on ${n.port}`);
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    ports: nodes.map((n) => n.port),
    url: `redis://127.0.0.1:${(nodes[0] as RedisProcess).port}`,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
