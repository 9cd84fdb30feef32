// Hand-checked decisions on examples/demo.json (imported with importDocument)
// at DEMO_NOW. Shared by the oracle, engine and server tests: each row says
// why, in terms of the demo's records (ids are 0000KKKK-...-0000000000NN, KK
// the entity kind; see the demo's $comment).

export const DEMO_NOW = new Date("2026-06-01T00:00:00Z");

export interface DemoDecision {
  subject: { type: string; id: string };
  permission: string;
  resource: { type: string; id: string };
  allowed: boolean;
  reason: string;
  why: string;
}

const id = (kind: string, n: string) => `000000${kind}-0000-4000-8000-0000000000${n}`;

/** Demo records by name. */
export const DEMO = {
  tenant: { acme: id("01", "01") },
  org: { eng: id("02", "01"), sales: id("02", "02") },
  user: {
    alice: id("03", "01"),
    bob: id("03", "02"),
    carol: id("03", "03"),
    dave: id("03", "04"),
    erin: id("03", "05"),
    frank: id("03", "06"),
    grace: id("03", "07"),
    heidi: id("03", "08"),
  },
  staff: { sam: id("04", "01"), tess: id("04", "02") },
  account: { eng: id("05", "01"), engContractors: id("05", "02"), sales: id("05", "03"), salesArchive: id("05", "04") },
  principal: {
    aliceEng: id("06", "01"),
    bobEng: id("06", "02"),
    carolEng: id("06", "03"),
    daveEng: id("06", "04"),
    erinEng: id("06", "05"),
    frankSales: id("06", "06"),
    graceSales: id("06", "07"),
    heidiSales: id("06", "08"),
    carolContractor: id("06", "09"),
    bobSales: id("06", "10"),
    graceArchive: id("06", "11"),
    samEng: id("06", "12"),
    tessSales: id("06", "13"),
  },
  avatar: { acmeBot: id("07", "01"), engNews: id("07", "02"), salesDesk: id("07", "03"), engChangelog: id("07", "04") },
} as const;

const UNKNOWN = "0000ffff-0000-4000-8000-00000000beef";

const s = (type: string, sid: string) => ({ type, id: sid });
const r = (type: string, rid: string) => ({ type, id: rid });
const yes = (subject: { type: string; id: string }, permission: string, resource: { type: string; id: string }, why: string): DemoDecision => ({
  subject,
  permission,
  resource,
  allowed: true,
  reason: "GRANTED",
  why,
});
const no = (subject: { type: string; id: string }, permission: string, resource: { type: string; id: string }, reason: string, why: string): DemoDecision => ({
  subject,
  permission,
  resource,
  allowed: false,
  reason,
  why,
});

const { user: u, staff: st, account: a, principal: p, avatar: v, org: o, tenant: t } = DEMO;

export const DEMO_DECISIONS: readonly DemoDecision[] = [
  // --- GRANTED ---
  yes(
    s("user", u.alice),
    "members.read",
    r("organization", o.eng),
    "alice holds eng owner on acme-eng; owner inherits admin, admin inherits member, member holds members.read (depth-2 inheritance)",
  ),
  yes(
    s("user", u.alice),
    "org.delete",
    r("avatar", v.acmeBot),
    "alice's eng owner on the organization covers its avatar acme-bot; owner holds org.delete directly",
  ),
  yes(
    s("user", u.bob),
    "members.invite",
    r("organization", o.eng),
    "UserOrganizationInfo gives bob the primary role admin on acme-eng; admin holds members.invite",
  ),
  yes(
    s("user", u.grace),
    "billing.manage",
    r("organization", o.sales),
    "grace's additional role billing on acme-sales holds billing.manage (multi_role organization)",
  ),
  yes(
    s("staff", st.sam),
    "support.read",
    r("tenant", t.acme),
    "staff sam holds the global role support on tenant acme (valid until 2030); support holds the global support.read",
  ),
  yes(
    s("staff", st.sam),
    "support.impersonate",
    r("avatar", v.salesDesk),
    "sam's tenant-scoped support covers sales-desk (avatar of acme-sales, in tenant acme)",
  ),
  yes(s("staff", st.tess), "support.read", r("tenant", t.acme), "staff tess holds support with global scope, which covers every resource"),
  yes(
    s("principal", p.bobEng),
    "avatar.post",
    r("avatar", v.acmeBot),
    "bob's principal has an active accepted membership in acme-bot: avatar_member there, which holds avatar.post",
  ),
  yes(
    s("principal", p.aliceEng),
    "avatar.transfer",
    r("avatar", v.acmeBot),
    "alice's principal owns acme-bot: avatar_owner there, which holds avatar.transfer",
  ),
  yes(
    s("principal", p.carolEng),
    "avatar.view",
    r("avatar", v.engNews),
    "carol's principal owns eng-news: it holds avatar_member (which holds avatar.view) and avatar_owner (which also inherits it)",
  ),
  yes(
    s("principal", p.heidiSales),
    "avatar.view",
    r("avatar", v.salesDesk),
    "heidi's membership in sales-desk expired (2025-01-01), but her account sales holds avatar_member on sales-desk",
  ),
  yes(
    s("account", a.eng),
    "members.invite",
    r("avatar", v.engNews),
    "account eng holds admin on acme-eng, which covers its avatar eng-news; admin holds members.invite",
  ),
  yes(
    s("principal", p.samEng),
    "avatars.manage",
    r("organization", o.eng),
    "a staff principal can act; its account eng holds admin on acme-eng, which holds avatars.manage",
  ),

  // --- NO_GRANT ---
  no(
    s("user", u.carol),
    "members.invite",
    r("organization", o.eng),
    "NO_GRANT",
    "carol is only member of acme-eng; member holds members.read and avatars.read only",
  ),
  no(
    s("user", u.alice),
    "members.read",
    r("avatar", v.salesDesk),
    "NO_GRANT",
    "members.read exists in acme-sales, but alice's roles are all on acme-eng: no grant covers sales-desk",
  ),
  no(
    s("user", u.alice),
    "avatar.view",
    r("avatar", v.acmeBot),
    "NO_GRANT",
    "memberships belong to principals: user alice herself holds nothing on acme-bot that allows avatar.view",
  ),
  no(
    s("principal", p.bobEng),
    "avatar.moderate",
    r("avatar", v.acmeBot),
    "NO_GRANT",
    "bob's principal is a plain member of acme-bot: avatar_member does not hold avatar.moderate",
  ),
  no(
    s("principal", p.bobEng),
    "avatar.view",
    r("avatar", v.engNews),
    "NO_GRANT",
    "bob's membership in eng-news was never accepted (accepted_at null), and account eng's admin does not hold avatar.view",
  ),
  no(
    s("account", a.engContractors),
    "members.read",
    r("organization", o.eng),
    "NO_GRANT",
    "account eng-contractors' member role on acme-eng expired on 2025-01-01",
  ),
  no(s("account", a.engContractors), "avatar.view", r("avatar", v.engNews), "NO_GRANT", "account eng-contractors' avatar_member on eng-news is not active"),
  no(s("staff", st.sam), "members.read", r("organization", o.eng), "NO_GRANT", "sam's support role holds only support.read and support.impersonate"),
  no(
    s("principal", p.samEng),
    "support.read",
    r("tenant", t.acme),
    "NO_GRANT",
    "staff sam's own tenant grant is not his principal's: principal sam-eng has only account eng's admin on acme-eng, which does not cover the tenant",
  ),

  // --- the subject cannot act ---
  no(s("user", u.dave), "members.read", r("organization", o.eng), "SUBJECT_LOCKED", "dave is locked (he is a member of acme-eng otherwise)"),
  no(s("user", u.erin), "members.read", r("organization", o.eng), "SUBJECT_DISABLED", "erin is disabled (enabled = false)"),
  no(
    s("principal", p.daveEng),
    "avatar.view",
    r("avatar", v.acmeBot),
    "SUBJECT_LOCKED",
    "dave's principal is active and accepted, but its user dave is locked",
  ),
  no(
    s("principal", p.erinEng),
    "avatar.view",
    r("avatar", v.engNews),
    "SUBJECT_DISABLED",
    "erin's principal is active and accepted, but its user erin is disabled",
  ),
  no(s("account", a.salesArchive), "members.read", r("organization", o.sales), "ACCOUNT_INACTIVE", "account sales-archive is inactive"),
  no(
    s("principal", p.graceArchive),
    "members.read",
    r("organization", o.sales),
    "PRINCIPAL_INACTIVE",
    "grace's principal in sales-archive is inactive (checked before its account, which is inactive too)",
  ),
  no(s("principal", p.bobSales), "members.read", r("organization", o.sales), "NOT_ACCEPTED", "bob's principal in account sales has accepted_at null"),
  no(
    s("principal", p.carolContractor),
    "members.read",
    r("organization", o.eng),
    "PRINCIPAL_EXPIRED",
    "carol's principal in eng-contractors was valid until 2025-01-01",
  ),

  // --- the resource is inactive ---
  no(
    s("principal", p.aliceEng),
    "avatar.transfer",
    r("avatar", v.engChangelog),
    "RESOURCE_INACTIVE",
    "alice's principal owns eng-changelog, but that avatar is inactive",
  ),
  no(
    s("user", u.alice),
    "members.read",
    r("avatar", v.engChangelog),
    "RESOURCE_INACTIVE",
    "alice's eng owner would cover eng-changelog, but the avatar is inactive",
  ),
  no(
    s("user", u.dave),
    "members.read",
    r("avatar", v.engChangelog),
    "SUBJECT_LOCKED",
    "precedence: a locked subject (rule 4) is reported before an inactive resource (rule 5)",
  ),

  // --- not found ---
  no(s("user", UNKNOWN), "members.read", r("organization", o.eng), "SUBJECT_NOT_FOUND", "no user has that id"),
  no(s("account", u.alice), "members.read", r("organization", o.eng), "SUBJECT_NOT_FOUND", "alice's id is a user's, not an account's"),
  no(s("user", "not-a-uuid"), "members.read", r("organization", o.eng), "SUBJECT_NOT_FOUND", "an id that is not a UUID matches nothing"),
  no(
    s("user", UNKNOWN),
    "no.such",
    r("avatar", UNKNOWN),
    "SUBJECT_NOT_FOUND",
    "precedence: an unknown subject is reported before an unknown resource or permission",
  ),
  no(s("user", u.alice), "members.read", r("avatar", UNKNOWN), "RESOURCE_NOT_FOUND", "no avatar has that id"),
  no(s("user", u.alice), "members.read", r("avatar", o.eng), "RESOURCE_NOT_FOUND", "acme-eng's id is an organization's, not an avatar's"),
  no(s("user", u.alice), "no.such", r("organization", o.eng), "PERMISSION_NOT_FOUND", "no permission has the key no.such"),
  no(
    s("user", u.alice),
    "members.read",
    r("tenant", t.acme),
    "PERMISSION_NOT_FOUND",
    "members.read exists only in the organizations; a tenant matches global permissions only",
  ),
  no(
    s("user", u.dave),
    "no.such",
    r("organization", o.eng),
    "PERMISSION_NOT_FOUND",
    "precedence: an unknown permission (rule 3) is reported before a locked subject (rule 4)",
  ),
];
