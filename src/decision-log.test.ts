// The decision log's destination is checked when it is created: a file that
// cannot be written is refused at start-up, naming AUTHZ_DECISION_LOG, rather
// than every decision being dropped later without a word.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createDecisionLog } from "./decision-log.js";

const dir = mkdtempSync(join(tmpdir(), "authz-decision-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the decision log's file", () => {
  it("that cannot be written is refused when the log is created", () => {
    // Under a regular file: no directory can be made there, whoever runs the test.
    expect(() => createDecisionLog({ destination: "/dev/null/decisions.log", sampleRate: 1 })).toThrow(/AUTHZ_DECISION_LOG: cannot write the decision log/);
  });

  it("that can be written gets one line per decision", async () => {
    const path = join(dir, "nested", "decisions.log");
    const log = createDecisionLog({ destination: path, sampleRate: 1 });
    log.record({ method: "Check", allowed: true } as never);
    // The writes are asynchronous (the file opens in the background): wait for the line, bounded.
    const deadline = Date.now() + 5000;
    while (!readFileSync(path, "utf8").includes('"allowed":true') && Date.now() < deadline) {
      await log.flush().catch(() => {});
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(readFileSync(path, "utf8")).toMatch(/"allowed":true/);
  });
});
