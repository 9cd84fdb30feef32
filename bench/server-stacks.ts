// Server-stack benchmark for gRPC (issue 2).
//
// Serves one trivial unary RPC, /grpc.health.v1.Health/Check -> SERVING, through
// several server stacks and drives each with h2load as an independent load
// generator process. Each server runs in its own child process (this same file,
// started with `--serve <stack>`), so neither the load generator nor the
// verification client competes with the server inside one event loop.
//
// Run:  npm run build:bench && node dist/bench/server-stacks.js
// Env:  BENCH_REQUESTS (default 30000)   measured requests per run
//       BENCH_WARMUP   (default 2000)    warm-up requests before each run
//       BENCH_ROUNDS   (default 2)       interleaved rounds (a,b,c,a,b,c)
//       BENCH_STACKS   (default all)     comma-separated subset of stack ids
//       BENCH_CPU_PROF (optional)        directory: run servers with --cpu-prof there
//       H2LOAD         (default /usr/bin/h2load)

import { fork, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { HealthCheckRequest, HealthCheckResponse } from "../gen/grpc/health/v1/health_pb.js";

const CHECK_PATH = "/grpc.health.v1.Health/Check";

export const STACKS = {
  "bare-http2": "a. bare node:http2, canned reply",
  "grpc-js": "b. @grpc/grpc-js Server + protobuf-es",
  "connect-node": "c. connect-node adapter on http2",
  "connect-node-const": "d. connect-node, handler returns a preallocated message",
  "grpc-js-canned": "e. @grpc/grpc-js, canned response bytes",
  "grpc-js-no-channelz": "f. @grpc/grpc-js + protobuf-es, grpc.enable_channelz=0",
  authz: "g. the authz server itself (gRPC listener, embedded store, log level warn)",
  "authz-log": "h. as g, log level info: one JSON line per call (to /dev/null)",
} as const;
export type StackId = keyof typeof STACKS;
const ALL_STACKS = Object.keys(STACKS) as StackId[];

function isStackId(s: string): s is StackId {
  return Object.hasOwn(STACKS, s);
}

// ---------------------------------------------------------------------------
// Shared protobuf helpers

function serializeRequest(m: HealthCheckRequest): Buffer {
  const b = toBinary(HealthCheckRequestSchema, m);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
function deserializeRequest(b: Buffer): HealthCheckRequest {
  return fromBinary(HealthCheckRequestSchema, b);
}
function serializeResponse(m: HealthCheckResponse): Buffer {
  const b = toBinary(HealthCheckResponseSchema, m);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
function deserializeResponse(b: Buffer): HealthCheckResponse {
  return fromBinary(HealthCheckResponseSchema, b);
}

/** gRPC length-prefixed message: flag byte 0, uint32 BE length, payload. */
export function grpcFrame(payload: Uint8Array): Buffer {
  const f = Buffer.alloc(5 + payload.byteLength);
  f.writeUInt8(0, 0);
  f.writeUInt32BE(payload.byteLength, 1);
  f.set(payload, 5);
  return f;
}

function servingResponse(): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
}

// ---------------------------------------------------------------------------
// Servers (run in the child process)

interface Running {
  port: number;
  close(): Promise<void>;
}

function listenHttp2(server: http2.Http2Server): Promise<Running> {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        port,
        close: () =>
          new Promise<void>((res) => {
            for (const s of sessions) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}

function startBareHttp2(): Promise<Running> {
  const reply = grpcFrame(toBinary(HealthCheckResponseSchema, servingResponse()));
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    if (headers[":path"] !== CHECK_PATH) {
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true });
      stream.resume();
      return;
    }
    stream.resume(); // drain the request body; reply once it has ended
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(reply);
    });
  });
  return listenHttp2(server);
}

function startGrpcJs(mode: "protobuf" | "canned", serverOptions: grpc.ServerOptions = {}): Promise<Running> {
  const cannedBytes = serializeResponse(servingResponse());
  const constResponse = servingResponse();
  const definition: grpc.ServiceDefinition = {
    Check: {
      path: CHECK_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: serializeRequest,
      requestDeserialize: deserializeRequest,
      responseSerialize: mode === "canned" ? () => cannedBytes : serializeResponse,
      responseDeserialize: deserializeResponse,
      originalName: "check",
    } satisfies grpc.MethodDefinition<HealthCheckRequest, HealthCheckResponse>,
  };
  const check: grpc.handleUnaryCall<HealthCheckRequest, HealthCheckResponse> = (_call, callback) => {
    callback(null, mode === "canned" ? constResponse : servingResponse());
  };
  const server = new grpc.Server(serverOptions);
  server.addService(definition, { Check: check });
  return new Promise((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({
        port,
        close: () =>
          new Promise<void>((res) => {
            server.forceShutdown();
            res();
          }),
      });
    });
  });
}

function startConnectNode(mode: "create" | "const"): Promise<Running> {
  const constResponse = servingResponse();
  const handler = connectNodeAdapter({
    routes: (router) => {
      router.service(Health, {
        check: mode === "const" ? () => constResponse : () => servingResponse(),
      });
    },
  });
  return listenHttp2(http2.createServer(handler));
}

function startStack(id: StackId): Promise<Running> {
  switch (id) {
    case "bare-http2":
      return startBareHttp2();
    case "grpc-js":
      return startGrpcJs("protobuf");
    case "grpc-js-canned":
      return startGrpcJs("canned");
    case "grpc-js-no-channelz":
      return startGrpcJs("protobuf", { "grpc.enable_channelz": 0 });
    case "connect-node":
      return startConnectNode("create");
    case "connect-node-const":
      return startConnectNode("const");
    case "authz":
      return startAuthz("warn");
    case "authz-log":
      return startAuthz("info");
  }
}

/** The real server as shipped: createApp on the embedded store, gRPC listener only measured. */
async function startAuthz(level: "warn" | "info"): Promise<Running> {
  const { pino } = await import("pino");
  const { loadConfig } = await import("../src/config.js");
  const { createLogger } = await import("../src/logger.js");
  const { createApp } = await import("../src/main.js");
  const app = createApp(
    loadConfig({ AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0", AUTHZ_EMBEDDED_IMPORT: "none" }),
    createLogger(level, pino.destination("/dev/null")),
  );
  const { grpcPort } = await app.listen();
  await app.ready;
  return { port: grpcPort, close: () => app.stop() };
}

type ChildMsg = { type: "listening"; port: number } | { type: "error"; message: string };

async function serveChild(id: string): Promise<void> {
  const send = (m: ChildMsg): void => {
    process.send?.(m);
  };
  if (!isStackId(id)) {
    send({ type: "error", message: `unknown stack ${id}` });
    process.exit(2);
  }
  let running: Running;
  try {
    running = await startStack(id);
  } catch (e) {
    send({ type: "error", message: String(e) });
    process.exit(1);
  }
  const stop = (): void => {
    // Give close a bounded time, then exit regardless (flushes --cpu-prof on normal exit).
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    void running.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop); // parent gone: do not linger
  send({ type: "listening", port: running.port });
}

// ---------------------------------------------------------------------------
// Parent: child management, verification, h2load

interface ServerChild {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function startServerChild(id: StackId, cpuProfDir: string | undefined): Promise<ServerChild> {
  const script = fileURLToPath(import.meta.url);
  const execArgv = cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir, "--cpu-prof-name", `${id}-${Date.now()}.cpuprofile`] : [];
  const child: ChildProcess = fork(script, ["--serve", id], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${id}: server child did not report a port within 15s`));
    }, 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${id}: server child exited early (code ${code})`));
    });
    child.on("message", (raw) => {
      const m = raw as ChildMsg;
      clearTimeout(timer);
      if (m.type === "error") {
        reject(new Error(`${id}: ${m.message}`));
        return;
      }
      resolve({
        port: m.port,
        pid: child.pid as number,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(killer);
        },
      });
    });
  });
}

/** A real gRPC client call (grpc-js, same protobuf-es serializers): must decode to SERVING with status OK. */
export function verifyWithGrpcClient(port: number): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<void>((resolve, reject) => {
    let response: HealthCheckResponse | undefined;
    let statusCode: grpc.status | undefined;
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      client.close();
      if (err) reject(err);
      else resolve();
    };
    const check = (): void => {
      if (response === undefined || statusCode === undefined) return;
      if (statusCode !== grpc.status.OK) finish(new Error(`grpc-status ${statusCode}`));
      else if (response.status !== HealthCheckResponse_ServingStatus.SERVING) finish(new Error(`status ${response.status}, want SERVING`));
      else finish();
    };
    const call = client.makeUnaryRequest<HealthCheckRequest, HealthCheckResponse>(
      CHECK_PATH,
      serializeRequest,
      deserializeResponse,
      create(HealthCheckRequestSchema, {}),
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, value) => {
        if (err) {
          finish(new Error(`grpc-js client: ${err.message}`));
          return;
        }
        response = value;
        check();
      },
    );
    call.on("status", (s: grpc.StatusObject) => {
      statusCode = s.code;
      check();
    });
  });
}

/** A raw HTTP/2 request with exactly the headers and body h2load sends; checks body and trailers. */
export function verifyRawLikeH2load(port: number, frame: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error("raw http2 check timed out"));
    }, 5000);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(e);
    };
    session.on("error", fail);
    const req = session.request({
      ":method": "POST",
      ":path": CHECK_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let httpStatus = 0;
    let grpcStatus: string | undefined;
    req.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      const s = h["grpc-status"]; // trailers-only reply
      if (typeof s === "string") grpcStatus = s;
    });
    req.on("trailers", (t) => {
      const s = t["grpc-status"];
      if (typeof s === "string") grpcStatus = s;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", fail);
    req.on("end", () => {
      clearTimeout(timer);
      session.close();
      const body = Buffer.concat(chunks);
      if (httpStatus !== 200) return reject(new Error(`raw: HTTP ${httpStatus}`));
      if (grpcStatus !== "0") return reject(new Error(`raw: grpc-status ${grpcStatus ?? "missing"}`));
      if (body.length < 5) return reject(new Error(`raw: body ${body.length} bytes`));
      const len = body.readUInt32BE(1);
      const msg = fromBinary(HealthCheckResponseSchema, body.subarray(5, 5 + len));
      if (msg.status !== HealthCheckResponse_ServingStatus.SERVING) return reject(new Error(`raw: status ${msg.status}`));
      resolve();
    });
    req.end(frame);
  });
}

export interface H2loadResult {
  reqPerSec: number;
  succeeded: number;
  failed: number;
  errored: number;
  status2xx: number;
  dataBytes: number;
  /** "time for request" line, microseconds */
  minUs: number;
  maxUs: number;
  meanUs: number;
  sdUs: number;
  p50Us?: number;
  p99Us?: number;
  raw: string;
}

function toMicros(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m || m[1] === undefined) throw new Error(`cannot parse h2load duration ${v}`);
  const n = Number(m[1]);
  return m[2] === "s" ? n * 1e6 : m[2] === "ms" ? n * 1e3 : n;
}

function num(re: RegExp, text: string, what: string): number {
  const m = re.exec(text);
  if (!m || m[1] === undefined) throw new Error(`h2load output: no ${what}\n${text}`);
  return Number(m[1]);
}

export function parseH2load(out: string): H2loadResult {
  const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  if (!t || !t[1] || !t[2] || !t[3] || !t[4]) throw new Error(`h2load output: no "time for request"\n${out}`);
  return {
    reqPerSec: num(/finished in [\d.]+m?s, ([\d.]+) req\/s/, out, "req/s"),
    succeeded: num(/(\d+) succeeded/, out, "succeeded"),
    failed: num(/(\d+) failed/, out, "failed"),
    errored: num(/(\d+) errored/, out, "errored"),
    status2xx: num(/status codes: (\d+) 2xx/, out, "2xx"),
    dataBytes: num(/\((\d+)\) data/, out, "data bytes"),
    minUs: toMicros(t[1]),
    maxUs: toMicros(t[2]),
    meanUs: toMicros(t[3]),
    sdUs: toMicros(t[4]),
    raw: out,
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

export interface LoadShape {
  clients: number;
  streams: number;
  /** Requests per second per client (h2load --rps); unset: as fast as the server answers. */
  rps?: number;
}

export function runH2load(
  h2loadBin: string,
  port: number,
  n: number,
  shape: LoadShape,
  frameFile: string,
  logFile: string | undefined,
  rpcPath: string = CHECK_PATH,
  extraHeaders: readonly string[] = [],
): Promise<string> {
  const args = [
    "-n",
    String(n),
    "-c",
    String(shape.clients),
    "-m",
    String(shape.streams),
    "-d",
    frameFile,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    ...extraHeaders.flatMap((h) => ["-H", h]),
    ...(shape.rps ? ["--rps", String(shape.rps)] : []),
  ];
  if (logFile) args.push("--log-file", logFile);
  args.push(`http://127.0.0.1:${port}${rpcPath}`);
  return new Promise((resolve, reject) => {
    const p = spawn(h2loadBin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (c: Buffer) => (out += c.toString()));
    p.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
    p.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`h2load exited ${code ?? signal}: ${err}${out}`));
      else resolve(out);
    });
  });
}

export function h2loadCommand(n: number, shape: LoadShape, rpcPath: string = CHECK_PATH): string {
  return (
    `h2load -n ${n} -c ${shape.clients} -m ${shape.streams}${shape.rps ? ` --rps ${shape.rps}` : ""} -d frame.bin ` +
    `-H 'content-type: application/grpc' -H 'te: trailers' --log-file LOG ` +
    `http://127.0.0.1:PORT${rpcPath}`
  );
}

// ---------------------------------------------------------------------------
// Driver

export interface ServerStacksOptions {
  requests?: number;
  warmup?: number;
  rounds?: number;
  clients?: number;
  streams?: number;
  stacks?: StackId[];
  h2load?: string;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface ServerStackRow {
  round: number;
  stack: StackId;
  label: string;
  requests: number;
  reqPerSec: number;
  meanUs: number;
  minUs: number;
  maxUs: number;
  sdUs: number;
  p50Us: number;
  p99Us: number;
  /** response DATA bytes per request as counted by h2load (7 for a valid SERVING reply) */
  dataBytesPerReq: number;
  /** req/s divided by bare-http2's req/s in the same round (NaN if bare-http2 not run) */
  ratioVsBare: number;
}

export function envInt(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

export async function runServerStacks(opts: ServerStacksOptions = {}): Promise<ServerStackRow[]> {
  const requests = opts.requests ?? envInt("BENCH_REQUESTS", 30000);
  const warmup = opts.warmup ?? envInt("BENCH_WARMUP", 2000);
  const rounds = opts.rounds ?? envInt("BENCH_ROUNDS", 2);
  const shape: LoadShape = { clients: opts.clients ?? 10, streams: opts.streams ?? 10 };
  const h2loadBin = opts.h2load ?? process.env["H2LOAD"] ?? "/usr/bin/h2load";
  const cpuProfDir = opts.cpuProfDir ?? process.env["BENCH_CPU_PROF"];
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  let stacks = opts.stacks;
  if (!stacks) {
    const env = process.env["BENCH_STACKS"];
    stacks = env
      ? env.split(",").map((s) => {
          const t = s.trim();
          if (!isStackId(t)) throw new Error(`BENCH_STACKS: unknown stack ${t} (known: ${ALL_STACKS.join(", ")})`);
          return t;
        })
      : ALL_STACKS;
  }

  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-bench-"));
  const frame = grpcFrame(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})));
  const frameFile = path.join(dir, "frame.bin");
  const replyFrameBytes = grpcFrame(toBinary(HealthCheckResponseSchema, servingResponse())).byteLength;
  await writeFile(frameFile, frame);
  const rows: ServerStackRow[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      const roundRows: ServerStackRow[] = [];
      for (const stack of stacks) {
        const child = await startServerChild(stack, cpuProfDir);
        try {
          await verifyWithGrpcClient(child.port);
          await verifyRawLikeH2load(child.port, frame);
          if (warmup > 0) {
            const w = parseH2load(await runH2load(h2loadBin, child.port, warmup, shape, frameFile, undefined));
            if (w.succeeded !== warmup || w.status2xx !== warmup) throw new Error(`${stack}: warm-up had failures\n${w.raw}`);
          }
          const logFile = path.join(dir, `${stack}-${round}.log`);
          const r = parseH2load(await runH2load(h2loadBin, child.port, requests, shape, frameFile, logFile));
          if (r.succeeded !== requests || r.status2xx !== requests || r.failed !== 0 || r.errored !== 0)
            throw new Error(`${stack}: measured run had failures\n${r.raw}`);
          // h2load only sees HTTP status; also require every reply to carry exactly one SERVING frame.
          if (r.dataBytes !== requests * replyFrameBytes)
            throw new Error(`${stack}: ${r.dataBytes} response DATA bytes, want ${requests * replyFrameBytes}\n${r.raw}`);
          const lat: number[] = [];
          for (const line of (await readFile(logFile, "utf8")).split("\n")) {
            const cols = line.split("\t");
            if (cols.length >= 3 && cols[1] !== "-1") lat.push(Number(cols[2]));
          }
          lat.sort((a, b) => a - b);
          const row: ServerStackRow = {
            round,
            stack,
            label: STACKS[stack],
            requests,
            reqPerSec: r.reqPerSec,
            meanUs: r.meanUs,
            minUs: r.minUs,
            maxUs: r.maxUs,
            sdUs: r.sdUs,
            p50Us: percentile(lat, 50),
            p99Us: percentile(lat, 99),
            dataBytesPerReq: r.dataBytes / requests,
            ratioVsBare: NaN,
          };
          roundRows.push(row);
          log(`round ${round} ${stack}: ${r.reqPerSec.toFixed(0)} req/s, mean ${fmtUs(r.meanUs)}, p99 ${fmtUs(row.p99Us)}`);
        } finally {
          await child.stop();
        }
      }
      const bare = roundRows.find((r) => r.stack === "bare-http2");
      for (const r of roundRows) r.ratioVsBare = bare ? r.reqPerSec / bare.reqPerSec : NaN;
      rows.push(...roundRows);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return "n/a";
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length === 0) return NaN;
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export function formatServerStacks(rows: ServerStackRow[]): string {
  const lines: string[] = [];
  lines.push("| round | server | req/s | mean latency | p50 | p99 | max | ratio vs bare http2 |");
  lines.push("|---:|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    lines.push(
      `| ${r.round} | ${r.label} | ${r.reqPerSec.toFixed(0)} | ${fmtUs(r.meanUs)} | ${fmtUs(r.p50Us)} | ` +
        `${fmtUs(r.p99Us)} | ${fmtUs(r.maxUs)} | ${Number.isFinite(r.ratioVsBare) ? r.ratioVsBare.toFixed(2) : "n/a"} |`,
    );
  }
  const rounds = new Set(rows.map((r) => r.round)).size;
  if (rounds > 1) {
    lines.push("");
    lines.push(`Median over ${rounds} rounds (ratio = median of per-round ratios):`);
    lines.push("");
    lines.push("| server | req/s | mean latency | p50 | p99 | ratio vs bare http2 |");
    lines.push("|---|---:|---:|---:|---:|---:|");
    const order: StackId[] = [];
    for (const r of rows) if (!order.includes(r.stack)) order.push(r.stack);
    for (const s of order) {
      const rs = rows.filter((r) => r.stack === s);
      const ratio = median(rs.map((r) => r.ratioVsBare));
      lines.push(
        `| ${STACKS[s]} | ${median(rs.map((r) => r.reqPerSec)).toFixed(0)} | ${fmtUs(median(rs.map((r) => r.meanUs)))} | ` +
          `${fmtUs(median(rs.map((r) => r.p50Us)))} | ${fmtUs(median(rs.map((r) => r.p99Us)))} | ` +
          `${Number.isFinite(ratio) ? ratio.toFixed(2) : "n/a"} |`,
      );
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// Entry points

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;

if (isMain) {
  const serveIdx = process.argv.indexOf("--serve");
  if (serveIdx !== -1) {
    await serveChild(process.argv[serveIdx + 1] ?? "");
  } else {
    const requests = envInt("BENCH_REQUESTS", 30000);
    const shape = { clients: 10, streams: 10 };
    const rows = await runServerStacks({ requests, ...shape });
    process.stdout.write(
      `nproc ${os.availableParallelism()}, node ${process.version}, ${new Date().toISOString()}\n` +
        `load: ${h2loadCommand(requests, shape)} (warm-up ${envInt("BENCH_WARMUP", 2000)} requests first)\n\n` +
        formatServerStacks(rows) +
        "\n",
    );
  }
}
