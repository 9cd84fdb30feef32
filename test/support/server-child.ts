// The built server (dist/src/main.js) as a child process of a rate-limit fault test, on free
// loopback ports: what a deployment runs, so a test can show that the
// process itself survives (a crash exits the child, not the test worker) and
// that a burst is served by a process of its own. Only this child is ever
// stopped, by its own pid.
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { projectPath } from "../../src/paths.js";

export interface ServerProcess {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly pid: number;
  /** True while the process has not exited. */
  alive(): boolean;
  /** The exit code or signal, once exited. */
  readonly exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** The log lines (JSON) but per-call ones, the last 2000 at most: state changes, warnings, errors. */
  lines(): readonly string[];
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const KEEP_LINES = 2000;

/** Starts `node dist/src/main.js` with `env` (ports 0, host 127.0.0.1 added) and waits until it reports SERVING. */
export async function startServerProcess(env: Record<string, string>, timeoutMs = 30_000): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, [projectPath("dist/src/main.js")], {
    env: { PATH: process.env["PATH"] ?? "", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0", AUTHZ_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const recent: string[] = [];
  let exit: ServerProcess["exit"];
  // If the test process goes away first (a hook timed out, the run was stopped), the server goes too.
  const orphanGuard = () => child.kill("SIGKILL");
  process.once("exit", orphanGuard);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      process.off("exit", orphanGuard);
      resolve();
    }),
  );
  const keep = (line: string) => {
    // Per-call lines are many and say nothing here; every other line (state changes, warnings) is kept.
    if (line.includes('"msg":"rpc"')) return;
    recent.push(line);
    if (recent.length > KEEP_LINES) recent.splice(0, recent.length - KEEP_LINES);
  };
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", keep);
  const ports = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    let found: { grpcPort: number; httpPort: number } | undefined;
    const timer = setTimeout(() => reject(new Error(`server did not report SERVING within ${timeoutMs} ms:\n${recent.join("\n")}`)), timeoutMs);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`server exited during start-up (${JSON.stringify(exit)}):\n${recent.join("\n")}`));
    });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      keep(line);
      if (found && line.includes('"msg":"SERVING"')) {
        clearTimeout(timer);
        resolve(found);
      }
      if (!found && line.includes('"grpcPort"')) {
        const m = JSON.parse(line) as { grpcPort: number; httpPort: number };
        found = { grpcPort: m.grpcPort, httpPort: m.httpPort };
      }
    });
  });
  return {
    ...ports,
    pid: child.pid as number,
    alive: () => exit === undefined,
    get exit() {
      return exit;
    },
    lines: () => recent,
    async stop(graceMs = 5000) {
      if (exit) return;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(killer);
    },
  };
}
