import { describe, expect, it } from "vitest";
import type { ImportProgress } from "../store/import.js";
import { importProgress } from "./import-progress.js";

const step = (section: string, sectionDone: number, sectionTotal: number, done: number, total = 100_000): ImportProgress => ({
  section,
  phase: "write",
  sectionDone,
  sectionTotal,
  done,
  total,
});

describe("import progress", () => {
  it("says nothing for an import shorter than a second", () => {
    let t = 0;
    const lines: string[] = [];
    const p = importProgress({ write: (l) => lines.push(l), now: () => t });
    t = 400;
    p.update(step("User", 5000, 5000, 5000, 5000));
    t = 900;
    p.finish();
    expect(lines).toEqual([]);
  });

  it("after a second: records per section, the rate and the time left, at most every half second within a section", () => {
    let t = 0;
    const lines: string[] = [];
    const p = importProgress({ write: (l) => lines.push(l), now: () => t });
    t = 500;
    p.update(step("User", 5000, 20_000, 5000));
    t = 2000;
    p.update(step("User", 20_000, 20_000, 20_000));
    t = 2100;
    p.update(step("UserRole", 5000, 80_000, 25_000));
    t = 2200;
    p.update(step("UserRole", 10_000, 80_000, 30_000));
    t = 3000;
    p.update(step("UserRole", 50_000, 80_000, 70_000));
    t = 4000;
    p.update(step("UserRole", 80_000, 80_000, 100_000));
    p.finish();
    expect(lines).toEqual([
      "authz import: writing User 20,000/20,000; 20,000/100,000 records, 10,000 records/s, about 8 s left",
      "authz import: writing UserRole 5,000/80,000; 25,000/100,000 records, 11,905 records/s, about 7 s left",
      "authz import: writing UserRole 50,000/80,000; 70,000/100,000 records, 23,333 records/s, about 2 s left",
      "authz import: writing UserRole 80,000/80,000; 100,000/100,000 records, 25,000 records/s, about 0 s left",
      "authz import: 100,000 records imported in 4.0 s (25,000 records/s)",
    ]);
  });

  it("starts the count and the clock again for the second pass of a refused restore-mode import, saying why", () => {
    let t = 0;
    const lines: string[] = [];
    const p = importProgress({ write: (l) => lines.push(l), now: () => t });
    t = 2000;
    p.update(step("UserRole", 80_000, 80_000, 100_000));
    t = 3000;
    p.update({ ...step("TENANT", 3, 3, 3), again: true });
    t = 5000;
    p.update({ ...step("UserRole", 40_000, 80_000, 50_000), again: true });
    expect(lines).toEqual([
      "authz import: writing UserRole 80,000/80,000; 100,000/100,000 records, 50,000 records/s, about 0 s left",
      "authz import: restore mode refused a record; writing again the usual way, to name it",
      "authz import: writing UserRole 40,000/80,000; 50,000/100,000 records, 25,000 records/s, about 2 s left",
    ]);
  });

  it("a dry run's last line says nothing was written", () => {
    let t = 0;
    const lines: string[] = [];
    const p = importProgress({ write: (l) => lines.push(l), now: () => t });
    t = 2000;
    p.update(step("User", 20_000, 20_000, 20_000, 20_000));
    p.finish(true);
    expect(lines.at(-1)).toBe("authz import: 20,000 records checked and rolled back (dry run: nothing written) in 2.0 s (10,000 records/s)");
  });
});
