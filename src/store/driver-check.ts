import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** A comment every hunk of patches/postgres+<version>.patch adds to postgres.js. */
export const DRIVER_PATCH_MARKER = "authz patch";

/** How many places the patch changes, per file of postgres.js (see patches/ and docs/faults.md). */
const PATCHED_PLACES: Readonly<Record<string, number>> = { "connection.js": 11, "index.js": 1 };

export interface DriverCheck {
  patched: boolean;
  /** The driver's directory that was inspected. */
  file: string;
}

/**
 * Whether the installed postgres.js carries the reviewed patch applied at
 * install (patch-package, from patches/). Without it a terminated backend
 * can crash the process (porsager/postgres#1154, #1208) or leave a pooled
 * connection unable to send (the nextWriteTimer defect).
 */
export function checkPostgresDriver(): DriverCheck {
  const dir = dirname(fileURLToPath(import.meta.resolve("postgres")));
  const patched = Object.entries(PATCHED_PLACES).every(([name, places]) => {
    try {
      return readFileSync(join(dir, name), "utf8").split(DRIVER_PATCH_MARKER).length - 1 >= places;
    } catch {
      return false;
    }
  });
  return { patched, file: dir };
}
