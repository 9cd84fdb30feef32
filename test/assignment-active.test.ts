// AssignRole's `active` over real servers: an assignment created suspended,
// resumed and suspended again in place (same id, same assigned_at), through
// ManageRoles' write pipeline (idempotency, expected_revision), seen by Check,
// ListAssignments and ExportDirectory on two replicas of one database, over
// gRPC and once over Connect JSON.

import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";

// examples/demo.json: acme-sales is multi_role; Heidi and Bob are members there, without the billing role.
const SALES = "00000002-0000-4000-8000-000000000002";
const BILLING_ROLE = "00000009-0000-4000-8000-000000000024"; // grants billing.read on acme-sales
const HEIDI = "00000003-0000-4000-8000-000000000008";
const BOB = "00000003-0000-4000-8000-000000000002";
const SALES_ORG = { type: "organization", id: SALES };

let t: TestDatabase;
const apps: App[] = [];
const ports: Array<{ grpcPort: number; httpPort: number }> = [];
const protos = loadProtos();

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  for (let i = 0; i < 2; i++) {
    const app = createApp(
      loadConfig({
        DATABASE_URL: t.url,
        AUTHZ_AUTH: "off",
        AUTHZ_HOST: "127.0.0.1",
        AUTHZ_GRPC_PORT: "0",
        AUTHZ_HTTP_PORT: "0",
        // Long: the other replica must follow the change log, not the poll.
        AUTHZ_REVISION_POLL_MS: "600000",
      }),
      createLogger("silent"),
    );
    ports.push(await app.listen());
    await app.ready;
    apps.push(app);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(apps.map((a) => a.stop()));
  await t?.drop();
});

const grpcPort = (replica: number) => (ports[replica] as { grpcPort: number }).grpcPort;

async function call<T>(replica: number, service: string, method: string, req: unknown): Promise<T> {
  const c = client(protos, `authz.v1.${service}`, grpcPort(replica));
  try {
    return await unary<T>(c, method, req);
  } finally {
    c.close();
  }
}

interface ManageRolesResponse {
  revision: string;
  results: Array<{ id: string; changed: boolean }>;
}

/** One assign_role of the billing role on acme-sales; `active` left out when undefined. */
const assignBilling = (user: string, active: boolean | undefined) => ({
  assign_role: { subject: { type: "user", id: user }, role: { id: BILLING_ROLE }, scope: SALES_ORG, ...(active === undefined ? {} : { active }) },
});

const manage = (replica: number, mutations: unknown[], extra: Record<string, string> = {}) =>
  call<ManageRolesResponse>(replica, "AdminService", "ManageRoles", { mutations, ...extra });

const billingRead = (replica: number, user: string, revision: string) =>
  call<{ allowed: boolean; reason: string; revision: string }>(replica, "PermissionService", "Check", {
    subject: { type: "user", id: user },
    permission: "billing.read",
    resource: SALES_ORG,
    consistency: { at_least_as_fresh: revision },
  });

interface Assignment {
  id: string;
  role_id: string;
  active: boolean;
  assigned_at: { seconds: string; nanos: number };
}

/** The user's billing assignment, as ListAssignments shows it (at least as fresh as `revision`, when given). */
async function assignmentOf(replica: number, user: string, revision?: string): Promise<Assignment | undefined> {
  const res = await call<{ assignments: Assignment[] }>(replica, "DirectoryService", "ListAssignments", {
    subject: { type: "user", id: user },
    ...(revision === undefined ? {} : { consistency: { at_least_as_fresh: revision } }),
  });
  return res.assignments.find((a) => a.role_id === BILLING_ROLE);
}

/** The ROLE_ASSIGNMENT records of ExportDirectory on one replica. */
async function exportedAssignments(replica: number): Promise<Array<Record<string, unknown>>> {
  const c = client(protos, "authz.v1.AdminService", grpcPort(replica));
  const records: Array<Record<string, unknown>> = [];
  try {
    const stream = (c.ExportDirectory as Function).call(c, {}, new grpc.Metadata(), { deadline: Date.now() + 20_000 }) as grpc.ClientReadableStream<{
      section: string;
      records_json: string;
    }>;
    for await (const m of stream) {
      if (m.section === "ROLE_ASSIGNMENT") records.push(...(JSON.parse(m.records_json) as Array<Record<string, unknown>>));
    }
  } finally {
    c.close();
  }
  return records;
}

describe("AssignRole active", () => {
  it("creates an assignment suspended, resumes and suspends it in place, and Check follows on every replica", async () => {
    expect(await assignmentOf(0, HEIDI)).toBeUndefined();
    // Created suspended: it exists, grants nothing.
    const created = await manage(0, [assignBilling(HEIDI, false)]);
    const [c0] = created.results;
    expect(c0).toMatchObject({ changed: true, id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    const id = c0?.id ?? "";
    for (const replica of [0, 1]) {
      expect(await billingRead(replica, HEIDI, created.revision)).toMatchObject({ allowed: false, reason: "DECISION_REASON_NO_GRANT" });
    }
    const suspended = await assignmentOf(1, HEIDI, created.revision);
    expect(suspended).toMatchObject({ id, active: false });
    const assignedAt = suspended?.assigned_at;

    // Resumed through the other replica: same id and assigned_at, allowed at the returned revision.
    const resumed = await manage(1, [assignBilling(HEIDI, true)]);
    expect(resumed.results).toEqual([{ id, changed: true }]);
    expect(BigInt(resumed.revision)).toBeGreaterThan(BigInt(created.revision));
    for (const replica of [0, 1]) {
      expect(await billingRead(replica, HEIDI, resumed.revision)).toMatchObject({ allowed: true, reason: "DECISION_REASON_GRANTED" });
    }
    expect(await assignmentOf(0, HEIDI, resumed.revision)).toEqual({ ...suspended, active: true, assigned_at: assignedAt });

    // Suspended again.
    const again = await manage(0, [assignBilling(HEIDI, false)]);
    expect(again.results).toEqual([{ id, changed: true }]);
    for (const replica of [0, 1]) {
      expect(await billingRead(replica, HEIDI, again.revision)).toMatchObject({ allowed: false, reason: "DECISION_REASON_NO_GRANT" });
    }
    expect(await assignmentOf(1, HEIDI, again.revision)).toEqual({ ...suspended, assigned_at: assignedAt });

    // Already suspended: a no-op, no new revision.
    const noop = await manage(1, [assignBilling(HEIDI, false)]);
    expect(noop).toEqual({ revision: again.revision, results: [{ id, changed: false }] });

    // The export carries the state.
    const exported = (await exportedAssignments(0)).find((r) => r.id === id);
    expect(exported).toMatchObject({ subject_type: "user", subject_id: HEIDI, role_id: BILLING_ROLE, active: false });
  });

  it("goes through the write pipeline: active is part of the idempotent payload, expected_revision guards it", async () => {
    const first = await manage(0, [assignBilling(BOB, false)], { idempotency_key: "bob-suspended" });
    expect(first.results[0]?.changed).toBe(true);
    // A retry replays the response; the same key with another active is another payload.
    expect(await manage(1, [assignBilling(BOB, false)], { idempotency_key: "bob-suspended" })).toEqual(first);
    const reused = (await manage(0, [assignBilling(BOB, true)], { idempotency_key: "bob-suspended" }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(reused.code).toBe(grpc.status.ALREADY_EXISTS);

    // Behind another write, a resume at a stale revision writes nothing.
    const other = await manage(0, [{ upsert_permission: { key: { organization_id: SALES, key: "billing.audit" } } }]);
    const stale = (await manage(1, [assignBilling(BOB, true)], { expected_revision: first.revision }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await billingRead(0, BOB, other.revision)).toMatchObject({ allowed: false, reason: "DECISION_REASON_NO_GRANT" });
    const current = await manage(1, [assignBilling(BOB, true)], { expected_revision: other.revision });
    expect(current.results).toEqual([{ id: first.results[0]?.id, changed: true }]);
    expect(await billingRead(0, BOB, current.revision)).toMatchObject({ allowed: true });
  });

  it("an AssignRole without active resumes a suspended assignment, as it did before the field", async () => {
    const suspended = await manage(0, [assignBilling(BOB, false)]);
    expect(await billingRead(1, BOB, suspended.revision)).toMatchObject({ allowed: false });
    const plain = await manage(0, [assignBilling(BOB, undefined)]);
    expect(plain.results).toEqual([{ id: suspended.results[0]?.id, changed: true }]);
    expect(await billingRead(1, BOB, plain.revision)).toMatchObject({ allowed: true });
  });

  it('Connect JSON: "active": false suspends the assignment', async () => {
    const res = await fetch(`http://127.0.0.1:${(ports[1] as { httpPort: number }).httpPort}/authz.v1.AdminService/ManageRoles`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        mutations: [{ assignRole: { subject: { type: "user", id: BOB }, role: { id: BILLING_ROLE }, scope: SALES_ORG, active: false } }],
      }),
    });
    const body = (await res.json()) as { revision: string; results: Array<{ id: string; changed?: boolean }> };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.results[0]?.changed).toBe(true);
    expect(await billingRead(0, BOB, body.revision)).toMatchObject({ allowed: false, reason: "DECISION_REASON_NO_GRANT" });
    expect(await assignmentOf(0, BOB, body.revision)).toMatchObject({ id: body.results[0]?.id, active: false });
  });
});
