// The console's directory pages in a real browser (issue 17's end-to-end
// scenario): sign in, find a user, run a decision and see its path, lock the
// user, see the decision flip; the role graph with a closure highlighted; an
// avatar's memberships invited, accepted and revoked, each read back at its
// revision; and a key without admin or directory scope changes nothing.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConsoleServer, changeCount, signedIn, startConsoleServer } from "./support/console.js";

const ACME = "00000001-0000-4000-8000-000000000001";
const ENG = "00000002-0000-4000-8000-000000000001";
const ALICE = "00000003-0000-4000-8000-000000000001";
const BOB = "00000003-0000-4000-8000-000000000002";
const BOT = "00000007-0000-4000-8000-000000000001"; // acme-bot in eng
const PRINCIPAL = "00000006-0000-4000-8000-000000000005"; // a principal of eng, not a member of acme-bot

let s: ConsoleServer;
beforeAll(async () => {
  s = await startConsoleServer();
}, 120_000);
afterAll(async () => {
  await s?.close();
});

const locked = async (id: string): Promise<boolean> => (await s.t.raw<{ locked: boolean }[]>`select locked from users where id = ${id}`)[0]?.locked === true;

describe("console: directory", () => {
  it("lists the rate-limit policies on the rate limits page", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.goto(`${s.base}/console/#/ratelimits`);
    const row = page.locator('#policies tr[data-policy="login-attempts"]');
    await row.waitFor();
    expect(await row.locator("td").nth(2).textContent()).toBe("5 per 300 s");
    await context.close();
  });

  it("a key without admin or directory scope is refused the directory and changes nothing", async () => {
    const before = await changeCount(s.t);
    const { context, page } = await signedIn(s, s.keys.reader);
    await page.goto(`${s.base}/console/#/user?id=${BOB}`);
    const refused = page.locator("#user .error");
    await refused.waitFor();
    expect(await refused.getAttribute("data-code")).toBe("permission_denied");
    await context.close();
    expect(await changeCount(s.t)).toBe(before);
    expect(await locked(BOB)).toBe(false);
  });

  it("finds a user, runs a decision with its path, locks the user and sees the decision flip", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.click('nav a[data-page="directory"]');
    await page.locator(`#directory table.tenants a[href*="${ACME}"]`).click();
    await page.locator(`#directory tr[data-org="${ENG}"] a:text("Members")`).click();
    await page.locator(`#directory table.members tr[data-user="${BOB}"]`).waitFor();
    await page.screenshot({ path: join(s.shots, "members.png") });

    await page.fill("#find-user input[name=email]", "bob@acme.example");
    await page.click("#find-user button[type=submit]");
    const record = page.locator("#user .record");
    await record.waitFor();
    expect(await record.getAttribute("data-locked")).toBe("false");

    await page.click('#app a:text("Run a decision")');
    await page.fill("input[name=permission]", "members.read");
    await page.fill("input[name=resource-id]", ENG);
    await page.click("#decide");
    const verdict = page.locator("#decision-result > .verdict");
    await verdict.waitFor();
    expect(await verdict.getAttribute("data-allowed")).toBe("true");
    expect(await verdict.locator("svg.path g.node text.kind").allTextContents()).toEqual(["USER", "ASSIGNMENT", "ROLE", "INHERITED ROLE", "PERMISSION"]);

    await page.goto(`${s.base}/console/#/user?id=${BOB}`);
    await page.locator("#user .record").waitFor();
    await page.click('button[data-action="lock"]');
    const written = page.locator(".write-out .written");
    await written.waitFor();
    const revision = (await written.getAttribute("data-revision")) as string;
    await page.locator('#user .record[data-locked="true"]').waitFor();
    expect(await locked(BOB)).toBe(true);

    // The same question again, at least as fresh as the lock.
    await page.click('#app a:text("Run a decision")');
    const after = page.locator("#decision-result > .verdict");
    await after.waitFor();
    expect(await after.getAttribute("data-allowed")).toBe("false");
    expect(await after.getAttribute("data-reason")).toBe("SUBJECT_LOCKED");
    expect(BigInt((await after.locator(".revision").getAttribute("data-revision")) as string)).toBeGreaterThanOrEqual(BigInt(revision));
    await page.screenshot({ path: join(s.shots, "decision-locked.png") });
    await context.close();
  });

  it("on the decision page, a user's email fills in the subject", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.goto(`${s.base}/console/#/decision`);
    await page.fill("input[name=subject-email]", "bob@acme.example");
    await page.press("input[name=subject-email]", "Tab");
    await expect.poll(() => page.inputValue("input[name=subject-id]")).toBe(BOB);
    await page.fill("input[name=subject-email]", "nobody@acme.example");
    await page.press("input[name=subject-email]", "Tab");
    await page.locator('#decision-form .error[data-code="not_found"]').waitFor();
    await context.close();
  });

  it("Enter in the email field decides for the user the email names, not the subject shown before", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    // Alice (owner) may delete acme-eng: the question is answered at once, allowed.
    await page.goto(`${s.base}/console/#/decision?subjectType=user&subjectId=${ALICE}&permission=org.delete&resourceType=organization&resourceId=${ENG}`);
    await page.locator('#decision-result > .verdict[data-allowed="true"]').waitFor();
    // Enter submits while the email's lookup is still out: the answer must be Bob's (not allowed), not Alice's again.
    await page.fill("input[name=subject-email]", "bob@acme.example");
    await page.press("input[name=subject-email]", "Enter");
    await expect.poll(() => page.inputValue("input[name=subject-id]")).toBe(BOB);
    await expect.poll(() => page.locator("#decision-result > .verdict").getAttribute("data-allowed")).toBe("false");
    await context.close();
  });

  it("draws an organization's roles and highlights the closure of a selected role", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.goto(`${s.base}/console/#/roles?org=${ENG}`);
    const nodes = page.locator("#roles svg.roles g.node");
    await nodes.first().waitFor();
    expect((await nodes.locator("text.label").allTextContents()).sort()).toEqual(["admin", "member", "owner"]);
    await nodes.filter({ hasText: "admin" }).click();
    const closure = page.locator("#role-closure");
    await closure.waitFor();
    expect(await closure.textContent()).toMatch(/Roles: .*admin.*member/);
    expect(await closure.textContent()).not.toMatch(/owner/);
    expect(await page.locator("#roles svg.roles g.node.lit, #roles svg.roles g.node.selected").count()).toBe(2);
    await page.screenshot({ path: join(s.shots, "roles.png") });
    await context.close();
  });

  it("draws the global roles an organization's role inherits, and their permissions in its closure", async () => {
    const helpdesk = "0000c5a1-0000-4000-8000-000000000001";
    const perm = "0000c5a1-0000-4000-8000-000000000002";
    await s.t.raw`insert into roles (id, organization_id, key, name) values (${helpdesk}, null, 'helpdesk', 'Helpdesk')`;
    await s.t.raw`insert into permissions (id, organization_id, key) values (${perm}, null, 'helpdesk.read')`;
    await s.t.raw`insert into role_permissions (role_id, permission_id) values (${helpdesk}, ${perm})`;
    await s.t.raw`insert into role_inheritance (role_id, parent_role_id)
                  select id, ${helpdesk}::uuid from roles where organization_id = ${ENG}::uuid and key = 'member'`;
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.goto(`${s.base}/console/#/roles?org=${ENG}`);
    const nodes = page.locator("#roles svg.roles g.node");
    await nodes.filter({ hasText: "helpdesk (global)" }).first().waitFor();
    await nodes.filter({ hasText: "member (" }).click();
    const closure = page.locator("#role-closure");
    await closure.waitFor();
    expect(await closure.textContent()).toMatch(/Roles: .*member.*helpdesk \(global\)/);
    expect(await closure.textContent()).toMatch(/Permissions: .*helpdesk\.read/);
    await context.close();
  });

  it("invites, accepts and revokes an avatar membership, each read back at its revision", async () => {
    const { context, page } = await signedIn(s, s.keys.admin);
    await page.goto(`${s.base}/console/#/avatar?id=${BOT}`);
    await page.locator("#memberships table.memberships").waitFor();
    // The demo's completed transfer of this avatar is listed under it.
    await page.locator('#avatar-transfers tr[data-transfer="00000013-0000-4000-8000-000000000001"]').waitFor();
    await page.fill("input[name=principal-id]", PRINCIPAL);
    await page.click('button[data-action="invite"]');
    await page.locator(".write-out .written").waitFor();
    const row = () => page.locator(`#memberships tr[data-principal="${PRINCIPAL}"]`);
    await row().locator('button[data-action="accept"]').click();
    await page.locator(".write-out .written").waitFor();
    await row().locator('button[data-action="accept"]').waitFor({ state: "detached" });
    const [m] = await s.t.raw<{ accepted_at: Date | null }[]>`select accepted_at from memberships where avatar_id = ${BOT} and principal_id = ${PRINCIPAL}`;
    expect(m?.accepted_at).not.toBeNull();
    await row().locator('button[data-action="revoke"]').click();
    await row().waitFor({ state: "detached" });
    expect(await s.t.raw`select 1 from memberships where avatar_id = ${BOT} and principal_id = ${PRINCIPAL}`).toHaveLength(0);
    await context.close();
  });
});
