import { describe, expect, it } from "vitest";
import { checkPostgresDriver } from "./driver-check.js";

describe("the installed postgres.js", () => {
  it("carries the patch from patches/ (npm ci's postinstall applied it)", () => {
    const check = checkPostgresDriver();
    expect(check.patched, `postgres.js in ${check.file} is not patched: run npx patch-package`).toBe(true);
  });
});
