// The console's who-can page (LookupSubjects) in a real browser: the subjects
// it lists are those whose Check is GRANTED, and each links to its decision.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleServer, signedIn, startConsoleServer } from "./support/console.js";

const ENG = "00000002-0000-4000-8000-000000000001";
const BOB = "00000003-0000-4000-8000-000000000002";
const DAVE = "00000003-0000-4000-8000-000000000004"; // locked

let s: ConsoleServer;
beforeAll(async () => {
  s = await startConsoleServer();
}, 120_000);
afterAll(async () => {
  await s?.close();
});

describe("console: who can", () => {
  it("lists who may do a permission on a resource, and each subject's decision is one click away", async () => {
    const { context, page } = await signedIn(s, s.keys.reader);
    await page.goto(`${s.base}/console/#/whocan`);
    await page.fill("input[name=permission]", "members.read");
    await page.fill("input[name=resource-id]", ENG);
    await page.selectOption("select[name=subject-type]", "user");
    await page.click("#who-can-form button[type=submit]");
    const rows = page.locator("#who-can table.who-can tbody tr");
    await rows.first().waitFor();
    const users = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-subject")));
    expect(users).toContain(BOB);
    expect(users).not.toContain(DAVE);
    // Each listed user is GRANTED by Check over the public API.
    for (const id of users) {
      const res = await fetch(`${s.base}/authz.v1.PermissionService/Check`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${s.keys.reader}` },
        body: JSON.stringify({ subject: { type: "user", id }, permission: "members.read", resource: { type: "organization", id: ENG } }),
      });
      expect(((await res.json()) as { reason: string }).reason).toBe("DECISION_REASON_GRANTED");
    }
    await page.screenshot({ path: join(s.shots, "who-can.png") });

    await page.click(`#who-can tr[data-subject="${BOB}"] a`);
    const verdict = page.locator("#decision-result > .verdict");
    await verdict.waitFor();
    expect(await verdict.getAttribute("data-allowed")).toBe("true");
    await context.close();
  });
});
