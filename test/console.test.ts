// The web console in a real browser: Debian's chromium driven by
// playwright-core, over a real server (real sockets, Postgres and Redis).
// The console is a plain API client, so what is proven here is that its pages
// show what the RPCs answer, that its writes report their revision and read
// back at it, and that a key without the admin scope changes nothing.
//
// Screenshots go to a temporary folder; with UPDATE_SCREENSHOTS=1 they
// replace docs/console/*.png (the README shows two of them).
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const CHROMIUM = "/usr/bin/chromium";
const ENG = "00000002-0000-4000-8000-000000000001";
const BOB = "00000003-0000-4000-8000-000000000002"; // admin in eng through one assignment
const BOT = "00000007-0000-4000-8000-000000000001"; // avatar acme-bot, owner membership ...0002
const SHOTS = process.env.UPDATE_SCREENSHOTS === "1" ? join(projectPath("docs"), "console") : mkdtempSync(join(tmpdir(), "authz-console-"));

let t: TestDatabase;
let app: App;
let base = "";
let browser: Browser;
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[]): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, null)`;
  return key;
}

beforeAll(async () => {
  if (!existsSync(projectPath("dist/console/main.js"))) throw new Error("the console is not built: run npm run build");
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  mkdirSync(SHOTS, { recursive: true });
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  keys.admin = await addKey("operator", ["admin", "check", "ratelimit"]);
  keys.reader = await addKey("reader", ["check", "ratelimit"]);
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
      AUTHZ_REDIS_KEY_PREFIX: `authz:console:${t.name}`,
      AUTHZ_AUTH: "on",
      AUTHZ_CONSOLE: "on",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
    }),
    createLogger("silent"),
  );
  const { httpPort } = await app.listen();
  await app.ready;
  base = `http://127.0.0.1:${httpPort}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await app?.stop();
  await t?.drop();
});

/** A fresh browser context (no shared memory with earlier ones), signed in with `key`. */
async function signedIn(key: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/`);
  await page.fill("#api-key", key);
  await page.click("#sign-in button[type=submit]");
  await page.locator('nav a[data-page="decision"]').waitFor();
  return { context, page };
}

async function decide(page: Page, subject: string, permission: string, resource: string): Promise<void> {
  await page.goto(`${base}/console/#/decision`);
  await page.selectOption("select[name=subject-type]", "user");
  await page.fill("input[name=subject-id]", subject);
  await page.fill("input[name=permission]", permission);
  await page.selectOption("select[name=resource-type]", "organization");
  await page.fill("input[name=resource-id]", resource);
  await page.click("#decide");
  await page.locator("#decision-result > .verdict").waitFor();
}

const changes = async (): Promise<number> => Number((await t.raw<{ n: string }[]>`select count(*)::text as n from authz_changes`)[0]?.n);
const bobsAssignments = async (): Promise<number> =>
  Number((await t.raw<{ n: string }[]>`select count(*)::text as n from role_assignments where user_id = ${BOB} and scope_id = ${ENG}`)[0]?.n);

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
