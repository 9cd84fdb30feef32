// The built server (dist/src/main.js) as a child process, for fault tests
// that must see whether the process itself survives. It listens on free
// loopback ports chosen here; only this child is ever signalled.
import { type ChildProcess, spawn } from "node:child_process";
import { projectPath } from "../../src/paths.js";
import { freePort } from "./redis.js";

export interface ServerProcess {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly pid: number | undefined;
  /** Every line the process wrote to stdout and stderr so far. */
  output(): string;
  /** Exit code or signal once it exited, else undefined. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Waits until a log line matches, bounded. */
  waitForLog(pattern: RegExp, ms: number): Promise<void>;
  /** SIGTERM, then SIGKILL after the bound. */
  stop(ms?: number): Promise<void>;
}

/** Resolves once GET path answers 200, or rejects after ms (or when the process exits). */
async function waitForHttp(port: number, path: string, ms: number, exited: () => unknown): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !exited()) {
    const ok = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${path} did not answer 200 within ${ms} ms`);
}

/** env adds to (or, with undefined, removes from) the defaults: loopback, free ports. */
export async function startServerProcess(
  env: Record<string, string | undefined>,
  opts: { readyMs?: number; waitReady?: boolean } = {},
): Promise<ServerProcess> {
  const grpcPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === grpcPort) httpPort = await freePort();
  const child: ChildProcess = spawn(process.execPath, [projectPath("dist/src/main.js")], {
    env: { PATH: process.env.PATH ?? "", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: String(grpcPort), AUTHZ_HTTP_PORT: String(httpPort), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const w of [...wakers]) w();
  };
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
    wake();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
    wake();
  });
  child.once("exit", (code, signal) => {
    exit = { code, signal };
    wake();
  });
  const waitForLog = (pattern: RegExp, ms: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(out)) {
          done();
          return resolve();
        }
        if (exit) {
          done();
          return reject(new Error(`server exited (${JSON.stringify(exit)}) before ${pattern}:\n${out.slice(-4000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no log line matching ${pattern} within ${ms} ms:\n${out.slice(-4000)}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      wakers.add(check);
      check();
    });
  try {
    await waitForHttp(httpPort, opts.waitReady === false ? "/healthz" : "/readyz", opts.readyMs ?? 30_000, () => exit);
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}; server output:\n${out.slice(-4000)}`);
  }
  return {
    grpcPort,
    httpPort,
    pid: child.pid,
    output: () => out,
    exited: () => exit,
    waitForLog,
    async stop(ms = 10_000) {
      if (exit) return;
      const gone = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), ms);
      await gone;
      clearTimeout(timer);
    },
  };
}
