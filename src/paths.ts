import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Absolute path of a file or folder shipped at the project root
 * (migrations/, examples/, proto/), found by walking up from this module so it
 * works from src/ (tests) and from dist/src/ (built).
 */
export function projectPath(relative: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${relative} above ${fileURLToPath(import.meta.url)}`);
}
