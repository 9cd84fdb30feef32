import { describe, expect, it } from "vitest";
import { NORMALIZE, readAssignment } from "./rows.js";

const id = "0b6c4f4e-3c1a-4b8e-9d2f-7a1e5c3b9d10";
const other = "7f0d2c1b-8a9e-4f3d-b2c1-0e9d8c7b6a54";

// A database row (booleans, Date), a change-log jsonb image (ISO strings, "t"/"f"), and odd values.
const ROWS: Record<string, unknown>[] = [
  { id, subject_type: "user", subject_id: other, role_id: other, scope_type: "organization", scope_id: id, active: true, valid_until: null },
  {
    id,
    subject_type: "user",
    subject_id: other,
    role_id: other,
    scope_type: "global",
    scope_id: null,
    active: false,
    valid_until: new Date(1_700_000_000_123),
  },
  {
    id,
    subject_type: "account",
    subject_id: other,
    role_id: other,
    scope_type: "avatar",
    scope_id: other,
    active: "t",
    valid_until: "2030-01-02T03:04:05.678Z",
  },
  { id, subject_type: "principal", subject_id: other, role_id: other, scope_type: "tenant", active: "true", valid_until: "not a time" },
  { id, subject_type: "staff", subject_id: other, role_id: other, scope_type: "tenant", scope_id: undefined, active: "f", valid_until: 1234 },
];

describe("readAssignment", () => {
  it("reads every shape of row exactly as NORMALIZE.role_assignments does", () => {
    for (const row of ROWS) expect({ ...readAssignment(row) }).toEqual(NORMALIZE.role_assignments(row));
  });
});
