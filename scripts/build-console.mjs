// Copies the web console's static files (HTML, CSS) next to its compiled
// modules in dist/console; tsc -p console/tsconfig.json compiled the rest.
import { cpSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
mkdirSync(join(root, "dist/console"), { recursive: true });
cpSync(join(root, "console/static"), join(root, "dist/console"), { recursive: true });
