// The web console's static files at /console on the HTTP listener
// (docs/console.md). The console is a plain client of the public API: the
// browser calls Connect JSON routes with the operator's key, and every call
// passes the guard like any other. This module only hands out files, read
// once at start-up from dist/console (built by `npm run build`), by exact
// name: no path from the request ever reaches the file system.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { extname, join } from "node:path";
import type { Logger } from "../logger.js";
import { projectPath } from "../paths.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const PREFIX = "/console";
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * Same-origin only: scripts, styles and calls to this server; no inline
 * script, no framing, no referrer (the page never holds a secret in its URL,
 * but nothing leaks one either).
 */
const HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-cache",
};

interface Asset {
  body: Buffer;
  type: string;
}

/** Every servable file of the built console, by its name under /console/. */
function readAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (sub: string) => {
    for (const e of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else if (TYPES[extname(e.name)]) assets.set(rel, { body: readFileSync(join(dir, rel)), type: TYPES[extname(e.name)] as string });
    }
  };
  walk("");
  return assets;
}

/** The folder of the built console (dist/console unless given), if it holds a build. */
function consoleDir(given: string | undefined): string | undefined {
  try {
    const dir = given ?? projectPath("dist/console");
    return existsSync(join(dir, "index.html")) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function send(res: Res, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...HEADERS, "content-type": type, ...extra });
  res.end(body);
}

/**
 * The console's routes for createHttpListener's extraRoutes: true when the
 * request was under /console. `methods` are the RPC paths this server binds,
 * published as /console/methods.json so the console offers only pages whose
 * RPCs exist.
 */
export function consoleRoutes(opts: { methods: readonly string[]; logger: Logger; dir?: string }): (req: Req, res: Res) => boolean {
  const dir = consoleDir(opts.dir);
  const assets = dir ? readAssets(dir) : new Map<string, Asset>();
  if (!dir) opts.logger.warn("AUTHZ_CONSOLE is on but dist/console holds no built console (run npm run build): /console answers 503");
  const methods = Buffer.from(JSON.stringify({ methods: opts.methods }));
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0] as string;
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, "text/plain; charset=utf-8", "the console serves GET only\n", { allow: "GET, HEAD" });
      return true;
    }
    if (path === PREFIX) {
      send(res, 308, "text/plain; charset=utf-8", "see /console/\n", { location: `${PREFIX}/` });
      return true;
    }
    const name = path.slice(PREFIX.length + 1) || "index.html";
    if (name === "methods.json") {
      send(res, 200, "application/json", methods);
      return true;
    }
    const asset = assets.get(name);
    if (asset) send(res, 200, asset.type, asset.body);
    else if (!dir) send(res, 503, "text/plain; charset=utf-8", "the console is not built on this server (npm run build)\n");
    else send(res, 404, "text/plain; charset=utf-8", "not found\n");
    return true;
  };
}
