// The layering rules of STYLE.md and docs/architecture.md, checked on the
// source: the engine is pure, only rpc/ speaks the generated API, and SQL
// lives in src/store/ alone.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { projectPath } from "./paths.js";

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return files(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [p] : [];
  });
}

const SOURCES = files(projectPath("src")).map((p) => ({ path: `src/${relative(projectPath("src"), p)}`, text: readFileSync(p, "utf8") }));
const imports = (text: string): string[] => [...text.matchAll(/^import[^"']*["']([^"']+)["']/gm)].map((m) => m[1] as string);

describe("layers", () => {
  it("src/engine is pure: no I/O, no Node built-ins, no drivers, no generated API", () => {
    const bad = SOURCES.filter((f) => f.path.startsWith("src/engine/")).flatMap((f) =>
      imports(f.text)
        .filter((i) => i.startsWith("node:") || /^(postgres|ioredis|pino|@electric-sql|@grpc|@connectrpc)/.test(i) || i.includes("/gen/") || !i.startsWith("."))
        .map((i) => `${f.path}: ${i}`),
    );
    expect(bad).toEqual([]);
  });

  it("only src/rpc (and the composition in src/app) import the generated API", () => {
    const bad = SOURCES.filter((f) => !f.path.startsWith("src/rpc/") && !f.path.startsWith("src/app/")).flatMap((f) =>
      imports(f.text)
        .filter((i) => i.includes("/gen/"))
        .map((i) => `${f.path}: ${i}`),
    );
    expect(bad).toEqual([]);
  });

  it("SQL text lives in src/store only", () => {
    const sql = /["'`]\s*(select\s[\s\S]{0,200}?\sfrom\s|insert\s+into\s|update\s+\w+\s+set\s|delete\s+from\s|create\s+(table|function|index)\s)/i;
    const bad = SOURCES.filter((f) => !f.path.startsWith("src/store/") && sql.test(f.text)).map((f) => f.path);
    expect(bad).toEqual([]);
  });
});
