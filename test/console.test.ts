// The web console in a real browser: Debian's chromium driven by
// playwright-core, over a real server (real sockets, Postgres and Redis).
// The console is a plain API client, so what is proven here is that its pages
// show what the RPCs answer, that its writes report their revision and read
// back at it, and that a key without the admin scope changes nothing.
// Screenshots: see test/support/console.ts (UPDATE_SCREENSHOTS=1 replaces
// docs/console/*.png, two of which the README shows).
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleServer, changeCount, decide as decideOn, signedIn as signIn, startConsoleServer } from "./support/console.js";
import type { Page } from "playwright-core";

const ENG = "00000002-0000-4000-8000-000000000001";
const BOB = "00000003-0000-4000-8000-000000000002"; // admin in eng through one assignment
const BOT = "00000007-0000-4000-8000-000000000001"; // avatar acme-bot, owner membership ...0002

let s: ConsoleServer;
let base = "";
let SHOTS = "";
const keys: Record<string, string> = {};

beforeAll(async () => {
  s = await startConsoleServer();
  base = s.base;
  SHOTS = s.shots;
  Object.assign(keys, s.keys);
}, 120_000);
afterAll(async () => {
  await s?.close();
});

const signedIn = (key: string) => signIn(s, key);
const decide = (page: Page, subject: string, permission: string, resource: string) => decideOn(s, page, subject, permission, resource);
const changes = () => changeCount(s.t);
const bobsAssignments = async (): Promise<number> =>
  Number((await s.t.raw<{ n: string }[]>`select count(*)::text as n from role_assignments where user_id = ${BOB} and scope_id = ${ENG}`)[0]?.n);

describe("web console", () => {
  it("is served with a strict content security policy, by exact file name only", async () => {
    const index = await fetch(`${base}/console/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(index.headers.get("x-frame-options")).toBe("DENY");
    expect((await fetch(`${base}/console`, { redirect: "manual" })).headers.get("location")).toBe("/console/");
    expect((await fetch(`${base}/console/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/console/%2e%2e/package.json`)).status).toBe(404);
    expect((await fetch(`${base}/console/`, { method: "POST", body: "x" })).status).toBe(405);
    const { methods } = (await (await fetch(`${base}/console/methods.json`)).json()) as { methods: string[] };
    expect(methods).toContain("/authz.v1.PermissionService/Check");
  });

  it("a key without the admin scope reads but cannot change anything through the console", async () => {
    const before = await changes();
    const { context, page } = await signedIn(keys.reader as string);
    await decide(page, BOB, "members.read", ENG);
    await expect(page.locator("#decision-result > .verdict").getAttribute("data-allowed")).resolves.toBe("true");
    await page.click('button[data-action="unassign"]');
    const refused = page.locator(".write-out .error");
    await refused.waitFor();
    expect(await refused.getAttribute("data-code")).toBe("permission_denied");
    expect(await refused.textContent()).toMatch(/needs the "admin" scope/);
    // The console now knows it is read-only: every write button is disabled.
    await page.goto(`${base}/console/#/subject?type=user&id=${BOB}`);
    await page.locator("#grants table.grants").waitFor();
    const writes = page.locator("button.write");
    expect(await writes.count()).toBe(2);
    for (const b of await writes.all()) expect(await b.isDisabled()).toBe(true);
    await context.close();

    // A fresh console with the same key: a transfer is refused by the server too.
    const fresh = await signedIn(keys.reader as string);
    await fresh.page.goto(`${base}/console/#/transfers?avatar=${BOT}`);
    await fresh.page.fill("input[name=from-membership]", "00000008-0000-4000-8000-000000000002");
    await fresh.page.fill("input[name=to-membership]", "00000008-0000-4000-8000-000000000001");
    await fresh.page.click('button[data-action="transfer"]');
    await fresh.page.locator('.write-out .error[data-code="permission_denied"]').waitFor();
    await fresh.context.close();

    expect(await changes()).toBe(before);
    expect(await bobsAssignments()).toBe(1);
  });

  it("signs in, runs a decision with its path, unassigns the granting role and shows the decision flip", async () => {
    const { context, page } = await signedIn(keys.admin as string);
    // The key is held in memory only.
    expect(page.url()).not.toContain("azk_");
    expect(await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")).toEqual([0, 0, ""]);

    await decide(page, BOB, "members.read", ENG);
    const verdict = page.locator("#decision-result > .verdict");
    expect(await verdict.getAttribute("data-allowed")).toBe("true");
    expect(await verdict.locator("svg.path g.node text.kind").allTextContents()).toEqual(["USER", "ASSIGNMENT", "ROLE", "INHERITED ROLE", "PERMISSION"]);
    expect((await verdict.locator("svg.path g.node text.label").allTextContents()).slice(2)).toEqual(["admin", "member", "members.read"]);
    await page.screenshot({ path: join(SHOTS, "decision-allowed.png") });

    await page.click('button[data-action="unassign"]');
    const written = page.locator(".write-out .written");
    await written.waitFor();
    const revision = (await written.getAttribute("data-revision")) as string;
    const after = page.locator(".write-out .verdict");
    await after.waitFor();
    expect(await after.getAttribute("data-allowed")).toBe("false");
    expect(await after.getAttribute("data-reason")).toBe("NO_GRANT");
    // Read back at least as fresh as the write: the decision's revision is not older.
    expect(BigInt((await after.locator(".revision").getAttribute("data-revision")) as string)).toBeGreaterThanOrEqual(BigInt(revision));
    await page.screenshot({ path: join(SHOTS, "decision-flipped.png"), fullPage: true });
    expect(await bobsAssignments()).toBe(0);
    await context.close();
  });

  it("shows a subject's grants a page at a time and the live rate-limit counters", async () => {
    // Spend some of Bob's budget through the public API, as a client would.
    const consumed = await fetch(`${base}/authz.v1.RateLimitService/ConsumeRateLimit`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.admin}` },
      body: JSON.stringify({ subject: { type: "user", id: BOB }, cost: "7", organizationId: ENG }),
    });
    expect(consumed.status).toBe(200);
    const { context, page } = await signedIn(keys.reader as string);
    await page.goto(`${base}/console/#/subject?type=user&id=${BOB}`);
    const rows = page.locator("#grants table.grants tbody tr");
    await rows.first().waitFor();
    expect(await rows.count()).toBeGreaterThan(0);
    expect(await page.locator("#grants [data-status]").getAttribute("data-status")).toBe("GRANTED");

    await page.goto(`${base}/console/#/ratelimits?type=user&id=${BOB}`);
    await page.fill("input[name=organization-id]", ENG);
    await page.click("#ratelimit-form button[type=submit]");
    const row = page.locator('#counters tr[data-policy="api-per-user"]');
    await row.waitFor();
    expect(await row.locator("td").nth(4).textContent()).toBe("93");
    await page.screenshot({ path: join(SHOTS, "rate-limits.png") });
    await context.close();
  });

  it("after a reload the console asks for the key again", async () => {
    const { context, page } = await signedIn(keys.reader as string);
    await page.reload();
    await page.locator("#api-key").waitFor();
    expect(await page.locator('nav a[data-page="decision"]').count()).toBe(0);
    await context.close();
  });
});
