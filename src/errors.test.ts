// The error catalogue is the one list of reasons: code raises only reasons
// in it (the type of AuthzError's reason enforces that at compile time; this
// file catches casts that would get around it), every reason in it is raised
// somewhere, and docs/errors.md is rendered from it.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, REASONS, renderErrorsDoc } from "./errors.js";
import { projectPath } from "./paths.js";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [p] : [];
  });
}

const SRC = sources(projectPath("src")).map((p) => ({ path: `src/${relative(projectPath("src"), p)}`, text: readFileSync(p, "utf8") }));

describe("the error catalogue", () => {
  it("docs/errors.md is rendered from it (run `npm run docs:errors` after changing src/errors.ts)", () => {
    expect(readFileSync(projectPath("docs/errors.md"), "utf8")).toBe(renderErrorsDoc());
  });

  it("no code casts its way around the reason types, except the one reviewed place", () => {
    const casts = SRC.flatMap((f) => [...f.text.matchAll(/as (Reason\b|ReasonOf<[^>]*>)/g)].map((m) => `${f.path}: ${m[0]}`));
    expect(casts).toEqual(["src/store/write-errors.ts: as ReasonOf<DomainCode>"]);
  });

  it("every specific reason is raised somewhere in src/ (a reason nobody raises is a stale promise)", () => {
    const code = SRC.filter((f) => f.path !== "src/errors.ts")
      .map((f) => f.text)
      .join("\n");
    const unused = Object.keys(REASONS).filter((r) => !Object.hasOwn(ERROR_CODES, r) && !code.includes(`"${r}"`));
    expect(unused).toEqual([]);
  });

  it("every reason names a code of the table, and has a meaning", () => {
    for (const [reason, e] of Object.entries(REASONS)) {
      expect(Object.keys(ERROR_CODES), reason).toContain(e.code);
      expect(e.meaning.length, reason).toBeGreaterThan(10);
    }
  });
});
