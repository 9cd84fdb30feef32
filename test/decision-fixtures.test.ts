// Table-driven decision fixtures (test/fixtures/decisions/*.json): a dataset
// in the import format plus the checks (and listings) that must come out as
// written, run against the engine alone, the independent SQL oracle, and the
// whole server over a real gRPC socket.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResourceRef, SubjectRef } from "../src/engine/types.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { loadSnapshot } from "../src/store/live-engine.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";
import { oracleCheck } from "./support/oracle.js";

interface Fixture {
  now: string;
  data: Record<string, unknown>;
  checks: Array<{ subject: string; permission: string; resource: string; allowed: boolean; reason: string; why: string }>;
  listings?: Array<{ subject: string; resource: string; user_role: string; user_permissions: string[]; additional_roles: string[]; why: string }>;
}

const DIR = projectPath("test/fixtures/decisions");
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort();
const protos = loadProtos();

const ref = <T extends SubjectRef | ResourceRef>(s: string): T => {
  const [type, id] = s.split(":");
  return { type, id } as T;
};

describe.each(FILES)("fixture %s", (file) => {
  const fx = JSON.parse(readFileSync(join(DIR, file), "utf8")) as Fixture;
  const now = new Date(fx.now);
  let t: TestDatabase;
  let app: App;
  let port: number;

  beforeAll(async () => {
    t = await freshDatabase();
    await importDocument(t.client, fx.data);
    app = createApp(
      loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    port = (await app.listen()).grpcPort;
    await app.ready;
  }, 60_000);

  afterAll(async () => {
    await app?.stop();
    await t?.drop();
  });

  it("the engine decides every check as written", async () => {
    const engine = await loadSnapshot(t.client);
    const got = fx.checks.map((c) => {
      const d = engine.check(ref<SubjectRef>(c.subject), c.permission, ref<ResourceRef>(c.resource), now.getTime());
      return { why: c.why, allowed: d.allowed, reason: d.reason };
    });
    expect(got).toEqual(fx.checks.map((c) => ({ why: c.why, allowed: c.allowed, reason: c.reason })));
  });

  it("the SQL oracle decides every check as written", async () => {
    const answers = await oracleCheck(
      t.raw,
      fx.checks.map((c) => {
        const s = ref<SubjectRef>(c.subject);
        const r = ref<ResourceRef>(c.resource);
        return { subjectType: s.type, subjectId: s.id, permission: c.permission, resourceType: r.type, resourceId: r.id };
      }),
      now,
    );
    expect(answers.map((a, i) => ({ why: fx.checks[i]?.why, reason: a.reason }))).toEqual(fx.checks.map((c) => ({ why: c.why, reason: c.reason })));
  });

  it("the server answers every check as written, over gRPC", async () => {
    const c = client(protos, "authz.v1.PermissionService", port);
    try {
      for (const chk of fx.checks) {
        const res = await unary<{ allowed: boolean; reason: string }>(c, "Check", {
          subject: ref(chk.subject),
          permission: chk.permission,
          resource: ref(chk.resource),
        });
        expect({ why: chk.why, allowed: res.allowed, reason: res.reason }).toEqual({
          why: chk.why,
          allowed: chk.allowed,
          reason: `DECISION_REASON_${chk.reason}`,
        });
      }
    } finally {
      c.close();
    }
  });

  it("ListPermissions lists what the checks allow", async () => {
    const engine = await loadSnapshot(t.client);
    for (const l of fx.listings ?? []) {
      const resource = ref<ResourceRef>(l.resource);
      const listing = engine.list(ref<SubjectRef>(l.subject), resource, now.getTime());
      const entry = listing?.entries.find((e) => e.scope?.type === resource.type && e.scope.id === resource.id);
      expect({ why: l.why, user_role: entry?.userRole, user_permissions: entry?.userPermissions, additional_roles: entry?.additionalRoles }).toEqual({
        why: l.why,
        user_role: l.user_role,
        user_permissions: l.user_permissions,
        additional_roles: l.additional_roles,
      });
    }
  });

  // The directory's view of a member (user_organization_info, read at the database's now()) must list the same
  // permissions as the engine for a user with a place in the organization; fixtures whose data expires are skipped.
  const places = (fx.listings ?? []).filter((l) => l.user_role !== "" && l.resource.startsWith("organization:"));
  it.skipIf(places.length === 0 || JSON.stringify(fx.data).includes("valid_until"))("ListOrganizationMembers lists what the checks allow", async () => {
    const d = client(protos, "authz.v1.DirectoryService", port);
    try {
      for (const l of places) {
        const res = await unary<{ members: Array<{ user_id: string; user_role: string; user_permissions: string[] }> }>(d, "ListOrganizationMembers", {
          organization_id: ref<ResourceRef>(l.resource).id,
        });
        const m = res.members.find((x) => x.user_id === ref<SubjectRef>(l.subject).id);
        expect({ why: l.why, user_role: m?.user_role, user_permissions: m?.user_permissions }).toEqual({
          why: l.why,
          user_role: l.user_role,
          user_permissions: l.user_permissions,
        });
      }
    } finally {
      d.close();
    }
  });
});
