import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "./config.js";
import { ERROR_CATALOGUE } from "./errors.js";
import { projectPath } from "./paths.js";

describe("documentation stays in step with the code", () => {
  const readme = readFileSync(projectPath("README.md"), "utf8");
  it("the README's configuration table lists every variable loadConfig reads", () => {
    for (const v of CONFIG_VARIABLES) expect(readme, v.name).toContain(`| \`${v.name}\` |`);
  });
  it("every error code in the catalogue is a gRPC code name with a description", () => {
    for (const [code, e] of Object.entries(ERROR_CATALOGUE)) {
      expect(e.grpc).toBe(code);
      expect(e.doc.length).toBeGreaterThan(10);
    }
  });
});
