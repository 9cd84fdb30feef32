import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "./config.js";
import { projectPath } from "./paths.js";

describe("documentation stays in step with the code", () => {
  const readme = readFileSync(projectPath("README.md"), "utf8");
  it("the README's configuration table lists every variable loadConfig reads", () => {
    for (const v of CONFIG_VARIABLES) expect(readme, v.name).toContain(`| \`${v.name}\` |`);
  });
});
