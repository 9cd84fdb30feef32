// A real server with the web console on, over a fresh database with the demo
// data, and Debian's chromium driven by playwright-core, for the console's
// browser tests. Screenshots go to a temporary folder, or to docs/console
// with UPDATE_SCREENSHOTS=1.
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { mintApiKey } from "../../src/auth/api-keys.js";
import type { Scope } from "../../src/auth/caller.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type App, createApp } from "../../src/main.js";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./db.js";

export const CHROMIUM = "/usr/bin/chromium";

export interface ConsoleServer {
  t: TestDatabase;
  base: string;
  browser: Browser;
  /** API keys by name: "admin" (admin, check, ratelimit) and "reader" (check, ratelimit). */
  keys: { admin: string; reader: string };
  /** Where screenshots go. */
  shots: string;
  close(): Promise<void>;
}

async function addKey(t: TestDatabase, name: string, scopes: Scope[]): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, null)`;
  return key;
}

export async function startConsoleServer(): Promise<ConsoleServer> {
  if (!existsSync(projectPath("dist/console/main.js"))) throw new Error("the console is not built: run npm run build");
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  const shots = process.env.UPDATE_SCREENSHOTS === "1" ? join(projectPath("docs"), "console") : mkdtempSync(join(tmpdir(), "authz-console-"));
  mkdirSync(shots, { recursive: true });
  const t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const keys = { admin: await addKey(t, "operator", ["admin", "check", "ratelimit"]), reader: await addKey(t, "reader", ["check", "ratelimit"]) };
  const app: App = createApp(
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
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  return {
    t,
    base: `http://127.0.0.1:${httpPort}`,
    browser,
    keys,
    shots,
    async close() {
      await browser.close();
      await app.stop();
      await t.drop();
    },
  };
}

/** A fresh browser context (no memory shared with earlier ones), signed in with `key`. */
export async function signedIn(s: ConsoleServer, key: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await s.browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  await page.goto(`${s.base}/console/`);
  await page.fill("#api-key", key);
  await page.click("#sign-in button[type=submit]");
  await page.locator('nav a[data-page="decision"]').waitFor();
  return { context, page };
}

/** Runs a decision on the decision page and waits for its verdict. */
export async function decide(s: ConsoleServer, page: Page, subject: string, permission: string, resource: string): Promise<void> {
  await page.goto(`${s.base}/console/#/decision`);
  await page.selectOption("select[name=subject-type]", "user");
  await page.fill("input[name=subject-id]", subject);
  await page.fill("input[name=permission]", permission);
  await page.selectOption("select[name=resource-type]", "organization");
  await page.fill("input[name=resource-id]", resource);
  await page.click("#decide");
  await page.locator("#decision-result > .verdict").waitFor();
}

/** Rows in the change log: a write through any path adds some. */
export async function changeCount(t: TestDatabase): Promise<number> {
  return Number((await t.raw<{ n: string }[]>`select count(*)::text as n from authz_changes`)[0]?.n);
}
