// Import progress on stderr: once an import has run for more than a second,
// a line per section and then at most every half second, with the records
// done, the rate and the time left; a last line with the total. Nothing for
// a short import, nothing with --quiet; stdout (the JSON summary) is never
// touched.

import type { ImportProgress } from "../store/import.js";

export interface ProgressOptions {
  /** Where lines go (stderr). */
  write(line: string): void;
  /** Milliseconds since some fixed point (performance.now). */
  now(): number;
  /** Silent until the import has run this long; default 1000. */
  afterMs?: number;
  /** At most one line per this many milliseconds within a section; default 500. */
  everyMs?: number;
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");

function eta(ms: number): string {
  const s = Math.ceil(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

/**
 * A progress reporter: `update` is ImportOptions.onProgress; `finish` (after the commit, or the dry run's
 * rollback) prints the last line when any was printed. The second pass of a refused restore-mode import
 * starts the count and the clock again, with a line saying why.
 */
export function importProgress(o: ProgressOptions): { update(p: ImportProgress): void; finish(dryRun?: boolean): void } {
  let started = o.now();
  let again = false;
  const afterMs = o.afterMs ?? 1000;
  const everyMs = o.everyMs ?? 500;
  let last = Number.NEGATIVE_INFINITY;
  let lastSection = "";
  let printed = false;
  let done = 0;
  return {
    update(p) {
      done = p.done;
      if (p.again && !again) {
        again = true;
        if (printed) o.write("authz import: restore mode refused a record; writing again the usual way, to name it");
        started = o.now();
        last = Number.NEGATIVE_INFINITY;
        lastSection = "";
      }
      const now = o.now();
      const elapsed = now - started;
      const key = `${p.phase} ${p.section}`;
      if (elapsed < afterMs || (key === lastSection && now - last < everyMs && p.sectionDone < p.sectionTotal)) return;
      const rate = p.done / (elapsed / 1000);
      const left = rate > 0 ? ((p.total - p.done) / rate) * 1000 : 0;
      const what = p.phase === "delete" ? "deleting" : "writing";
      o.write(
        `authz import: ${what} ${p.section} ${int(p.sectionDone)}/${int(p.sectionTotal)}; ${int(p.done)}/${int(p.total)} records, ${int(rate)} records/s, about ${eta(left)} left`,
      );
      last = now;
      lastSection = key;
      printed = true;
    },
    finish(dryRun = false) {
      if (!printed) return;
      const elapsed = (o.now() - started) / 1000;
      const what = dryRun ? "checked and rolled back (dry run: nothing written)" : "imported";
      o.write(`authz import: ${int(done)} records ${what} in ${elapsed.toFixed(1)} s (${int(done / elapsed)} records/s)`);
    },
  };
}
